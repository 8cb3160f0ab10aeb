"""stylize-train end to end on a few tiny photos (SqueezeNet's real weights), resume, bad input."""

import json
from dataclasses import replace

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from apps.style_transfer.fast import StyleNetwork, load_style
from apps.style_transfer.feedforward import load_painter
from apps.style_transfer.train import TrainSettings, train_style
from apps.style_transfer.train_cli import main
from shared.errors import InputError


@pytest.fixture
def tiny_photos(data_dir, tmp_path):
    """Six real photos shrunk to 96 px (reading them stays cheap), and a 64 px Starry Night."""
    folder = tmp_path / "photos"
    folder.mkdir()
    sources = sorted((data_dir / "cars" / "vehicles_openimages" / "valid" / "images").iterdir())
    for source in sources[:6]:
        image = cv2.imread(str(source))
        cv2.imwrite(str(folder / f"{source.stem}.jpg"), cv2.resize(image, (96, 96)))
    style = tmp_path / "starry.jpg"
    starry = cv2.imread(str(data_dir / "style" / "neural_style_inputs" / "starry_night.jpg"))
    cv2.imwrite(str(style), cv2.resize(starry, (80, 64)))
    return folder, style


def _event_tags(logdir):
    import tensorflow as tf

    tags = set()
    for path in logdir.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    return tags


def test_train_command_learns_logs_and_saves_a_model_that_stylizes(
    offline_weights, tiny_photos, tmp_path
):
    photos, style = tiny_photos
    output = tmp_path / "starry.keras"
    logdir = tmp_path / "logs"
    arguments = [str(style), "--images", str(photos), "-o", str(output), "--width", "light"]
    arguments += ["--steps", "8", "--batch-size", "2", "--image-size", "48", "--style-size", "64"]
    arguments += ["--learning-rate", "0.01", "--seed", "1"]
    arguments += ["--model", "squeezenet", "--logdir", str(logdir), "--val-every", "4", "--json"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    assert report["output"] == str(output) and report["steps"] == 8 and report["images"] == 6
    # 2-step means on random crops: the network starts from the photo (content 0), so the
    # total falls as the style comes in (measured 0.83 at lr 0.005 once; 0.8 is not a margin)
    assert report["last"]["total"] < 0.9 * report["first"]["total"]
    assert report["last"]["style"] < report["first"]["style"]

    tags = _event_tags(logdir)
    expected = {"loss/total", "loss/content", "loss/style", "loss/tv", "learning_rate", "style"}
    assert expected <= tags
    assert {tag for tag in tags if tag.startswith("validation/")}, tags  # photos as they form

    model = load_style(output)
    assert isinstance(model, StyleNetwork) and model.width == "light"
    assert model.style_name == "starry"
    assert model.thumbnail().shape == (102, 128, 3)  # 80x64 at 128 px on its longest side
    assert model.settings["network"] == "squeezenet"
    assert model.settings["train"]["steps_done"] == 8
    photo = cv2.cvtColor(cv2.imread(str(next(photos.iterdir()))), cv2.COLOR_BGR2RGB)[:45, :70]
    painted = load_painter(output, runtime="tensorflow")(photo[np.newaxis])[0]
    assert painted.shape == (1, 45, 70, 3) and painted.dtype == np.uint8  # any size in, same out
    assert painted.std() > 1.0  # a picture, not a flat colour


def test_interrupted_run_keeps_a_checkpoint_that_resume_continues(
    offline_weights, tiny_photos, tmp_path
):
    photos, style = tiny_photos
    output = tmp_path / "model.keras"
    settings = TrainSettings(width="light", image_size=40, style_size=48, batch_size=1, steps=4)

    def interrupt_at_two(step, parts):
        if step == 2:
            raise KeyboardInterrupt

    first = train_style(
        style, [photos], output, settings, model="squeezenet", on_step=interrupt_at_two
    )
    assert first.interrupted and first.steps == 2 and first.output is None
    assert not output.exists() and (tmp_path / "model.ckpt.npz").is_file()

    with pytest.raises(InputError, match="--resume"):
        train_style(style, [photos], output, settings, model="squeezenet")
    with pytest.raises(InputError, match="width"):
        wider = replace(settings, width="full")
        train_style(style, [photos], output, wider, model="squeezenet", resume=True)

    second = train_style(style, [photos], output, settings, model="squeezenet", resume=True)
    assert not second.interrupted and second.first_step == 2 and second.steps == 4
    assert load_style(output).settings["train"]["steps_done"] == 4


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["missing.jpg", "--images", "{photos}"], "missing.jpg"),
        (["{style}", "--images", "{photos}/nothing"], "nothing: no such file or folder"),
        (["{style}", "--images", "{photos}", "-o", "{tmp}/model.h5"], "must end in .keras"),
        (["{style}", "--images", "{photos}", "--width", "huge"], "'--width'"),
        (["{style}", "--images", "{photos}", "--image-size", "16"], "--image-size must be at"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    offline_weights, tiny_photos, tmp_path, arguments, message
):
    photos, style = tiny_photos
    filled = [a.format(photos=photos, style=style, tmp=tmp_path) for a in arguments]
    if "-o" not in filled:
        filled += ["-o", str(tmp_path / "out.keras")]
    result = CliRunner().invoke(main, filled)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "out.keras").exists()


@pytest.mark.parametrize(("flag", "value"), [("--steps", "0"), ("--model", "alexnet")])
def test_out_of_range_options_are_usage_errors(tiny_photos, tmp_path, flag, value):
    photos, style = tiny_photos
    result = CliRunner().invoke(main, [str(style), "--images", str(photos), flag, value])
    assert result.exit_code == 2 and flag in result.stderr


def test_an_existing_model_is_replaced_only_with_exist_ok(offline_weights, tiny_photos, tmp_path):
    photos, style = tiny_photos
    output = tmp_path / "kept.keras"
    output.write_bytes(b"an earlier model")
    arguments = [str(style), "--images", str(photos), "-o", str(output), "--steps", "1"]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 2 and "--exist-ok" in result.stderr
    assert output.read_bytes() == b"an earlier model"


def test_the_width_choices_are_the_backbones_widths():
    from apps.style_transfer.settings import TRANSFORMER_WIDTHS
    from shared.backbones.image_transformer import WIDTHS

    assert tuple(WIDTHS) == TRANSFORMER_WIDTHS
