"""stylize SOURCE --model X.keras: photos, folders and videos in one pass; Ctrl-C; bad input."""

import json

import cv2
import keras
import numpy as np
import pytest
from click.testing import CliRunner

from apps.style_transfer.cli import main
from apps.style_transfer.fast import StyleNetwork, thumbnail_jpeg
from apps.style_transfer.feedforward import TemporalSmoother, load_painter, stylize_with_model
from shared.errors import InputError
from shared.video import VideoReader, VideoWriter


@pytest.fixture(scope="module")
def style_model(tmp_path_factory):
    """A light style network (untrained: the plumbing is under test) saved as stylize-train does."""
    folder = tmp_path_factory.mktemp("model")
    keras.utils.set_random_seed(3)
    thumbnail = thumbnail_jpeg(np.full((40, 60, 3), 200, np.uint8))
    model = StyleNetwork("light", style_name="plain", style_thumbnail=thumbnail, settings={})
    model(np.zeros((1, 32, 32, 3), np.float32))
    path = folder / "plain.keras"
    model.save(path)
    return path


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def compiled_once(module_cache, monkeypatch):
    """One cache for the module: the style is compiled for OpenVINO once, not per test."""
    monkeypatch.setenv("CONVNET_APPS_CACHE", str(module_cache))


@pytest.fixture
def dashcam_video(data_dir, tmp_path):
    """12 real consecutive dashcam frames at 160x90, 10 frames/s."""
    path = tmp_path / "dashcam.mp4"
    frames = sorted((data_dir / "cars" / "driveai" / "images").glob("00*.jpg"))[:12]
    with VideoWriter(path, 10.0, 160, 90) as writer:
        for frame in frames:
            rgb = cv2.cvtColor(cv2.imread(str(frame)), cv2.COLOR_BGR2RGB)
            writer.write(cv2.resize(rgb, (160, 90), interpolation=cv2.INTER_AREA))
    return path


def _frames(path):
    with VideoReader(path) as reader:
        return reader.fps, [frame for frame in reader]


def test_photo_and_folder_in_one_pass(style_model, data_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    sources = sorted((data_dir / "cars" / "vehicles_openimages" / "valid" / "images").iterdir())
    for index, source in enumerate(sources[:2]):
        image = cv2.imread(str(source))
        cv2.imwrite(str(folder / f"p{index}.png"), cv2.resize(image, (70 + index, 45)))
    runner = CliRunner()
    result = runner.invoke(main, [str(folder / "p0.png"), "--model", str(style_model), "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    assert report["output"] == str(folder / "p0_plain.png") and report["kind"] == "image"
    assert cv2.imread(report["output"]).shape == (45, 70, 3)

    (folder / "p0_plain.png").unlink()
    result = runner.invoke(main, [str(folder), "--model", str(style_model)])
    assert result.exit_code == 0, result.output + result.stderr
    painted = tmp_path / "photos_plain"
    assert sorted(p.name for p in painted.iterdir()) == ["p0.png", "p1.png"]
    assert cv2.imread(str(painted / "p1.png")).shape == (45, 71, 3)


def test_video_keeps_size_rate_and_count_and_smoothing_lowers_flicker(
    style_model, dashcam_video, tmp_path
):
    plain = stylize_with_model(str(dashcam_video), style_model, tmp_path / "plain.mp4")
    smooth = stylize_with_model(
        str(dashcam_video), style_model, tmp_path / "smooth.mp4", smoothing=0.8
    )
    fps, frames = _frames(tmp_path / "plain.mp4")
    assert plain.kind == "video" and plain.frames == 12 and len(frames) == 12
    assert fps == pytest.approx(10.0) and frames[0].shape == (90, 160, 3)
    assert len(_frames(tmp_path / "smooth.mp4")[1]) == 12
    assert plain.mean_change > 0 and plain.input_change > 0
    assert smooth.mean_change < plain.mean_change  # the measured point of smoothing


def test_ctrl_c_leaves_a_playable_video_with_the_frames_done(style_model, dashcam_video, tmp_path):
    def interrupt(done, total):
        assert total == 12
        if done == 5:
            raise KeyboardInterrupt

    output = tmp_path / "cut.mp4"
    result = stylize_with_model(str(dashcam_video), style_model, output, on_frame=interrupt)
    assert result.interrupted and result.frames == 5
    assert len(_frames(output)[1]) == 5


def test_ctrl_c_names_the_playable_video_and_exits_130(
    style_model, dashcam_video, tmp_path, monkeypatch
):
    from apps.style_transfer import feedforward

    real = feedforward.stylize_with_model

    def interrupted_after_three(*args, **kwargs):
        def interrupt(done, total):
            if done == 3:
                raise KeyboardInterrupt

        return real(*args, **{**kwargs, "on_frame": interrupt})

    monkeypatch.setattr(feedforward, "stylize_with_model", interrupted_after_three)
    output = tmp_path / "cut.mp4"
    arguments = [str(dashcam_video), "--model", str(style_model), "-o", str(output)]
    result = CliRunner().invoke(main, arguments)
    assert result.exit_code == 130, result.output
    assert f"interrupted: {output} holds the 3 frame(s) done and plays" in result.stderr
    assert len(_frames(output)[1]) == 3


def test_outputs_are_replaced_only_with_exist_ok(style_model, tmp_path):
    photo, folder = tmp_path / "photo.png", tmp_path / "photos"
    cv2.imwrite(str(photo), np.full((40, 48, 3), 90, np.uint8))
    folder.mkdir()
    cv2.imwrite(str(folder / "a.png"), np.full((40, 48, 3), 90, np.uint8))
    earlier = tmp_path / "earlier.png"
    earlier.write_bytes(b"an earlier result")
    (tmp_path / "photos_plain").mkdir()
    runner = CliRunner()
    for source, output in ((photo, earlier), (folder, tmp_path / "photos_plain")):
        result = runner.invoke(main, [str(source), "--model", str(style_model), "-o", str(output)])
        assert result.exit_code == 2 and "--exist-ok" in result.stderr, result.output
        assert len(result.stderr.strip().splitlines()) == 1
    assert earlier.read_bytes() == b"an earlier result"
    assert not any((tmp_path / "photos_plain").iterdir())
    for source, output in ((photo, earlier), (folder, tmp_path / "photos_plain")):
        arguments = [str(source), "--model", str(style_model), "-o", str(output), "--exist-ok"]
        assert runner.invoke(main, arguments).exit_code == 0
    assert cv2.imread(str(earlier)).shape == (40, 48, 3)
    assert cv2.imread(str(tmp_path / "photos_plain" / "a.png")).shape == (40, 48, 3)


def test_openvino_paints_as_tensorflow_does_any_size_and_reads_its_cache(style_model):
    notes = []
    openvino = load_painter(style_model, "openvino", notify=notes.append)
    tensorflow = load_painter(style_model, "tensorflow")
    assert openvino.runtime == "openvino" and tensorflow.runtime == "tensorflow"
    assert openvino.metadata == {"style_name": "plain", "width": "light"}
    rng = np.random.default_rng(4)
    for height, width in ((45, 70), (64, 96)):  # one compiled model, every size
        frames = rng.integers(0, 256, (2, height, width, 3), dtype=np.uint8)
        ours, reference = openvino(frames)[0], tensorflow(frames)[0]
        assert ours.shape == frames.shape and ours.dtype == np.uint8
        assert np.abs(ours.astype(int) - reference).max() <= 1  # rounding at .5 may differ
    again = []
    load_painter(style_model, "openvino", notify=again.append)
    assert not again  # compiled once; the second load read the cache


def test_smoother_keeps_still_pixels_and_follows_moving_ones():
    with pytest.raises(InputError, match="--smooth must be in"):
        TemporalSmoother(1.0)
    smoother = TemporalSmoother(0.9)
    still = np.zeros((8, 8, 3), np.uint8)
    first = smoother(still, np.full((8, 8, 3), 100, np.uint8))
    assert (first == 100).all()
    second = smoother(still, np.full((8, 8, 3), 200, np.uint8))  # input unchanged: keep 90 %
    assert (second == 110).all()
    moved = np.full((8, 8, 3), 255, np.uint8)
    third = smoother(moved, np.full((8, 8, 3), 50, np.uint8))  # input changed: take the new
    assert (third == 50).all()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--model", "{tmp}/missing.keras"], "missing.keras: no such model file"),
        (["--model", "{tmp}/other.keras"], "not a style model"),
        (["{tmp}/style.jpg", "--model", "{model}"], "give no STYLES"),
        (["--model", "{model}", "-o", "{tmp}/photo.png"], "is the input"),
        (["{tmp}/style.jpg", "--runtime", "openvino"], "--runtime applies to a trained style"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(style_model, tmp_path, extra, message):
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((40, 40, 3), 90, np.uint8))
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    other.save(tmp_path / "other.keras")
    filled = [a.format(tmp=tmp_path, model=style_model) for a in extra]
    result = CliRunner().invoke(main, [str(photo), *filled])
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert cv2.imread(str(photo)).mean() == 90  # the input is untouched
