"""The stylize command end to end (SqueezeNet's real weights, tiny images) and its bad inputs."""

import json
import re
import socket

import cv2
import keras
import numpy as np
import pytest
import tensorflow as tf
from click.testing import CliRunner

from apps.style_transfer import features, transfer
from apps.style_transfer.cli import main
from shared.errors import InputError, WeightsError


@pytest.fixture
def style_images(data_dir, tmp_path):
    """Tubingen as a grey PNG and Starry Night as an RGBA PNG: both must be accepted."""
    inputs = data_dir / "style" / "neural_style_inputs"
    tubingen = cv2.imread(str(inputs / "tubingen.jpg"))
    starry = cv2.imread(str(inputs / "starry_night.jpg"))
    grey = tmp_path / "tubingen_grey.png"
    cv2.imwrite(str(grey), cv2.resize(cv2.cvtColor(tubingen, cv2.COLOR_BGR2GRAY), (128, 96)))
    rgba = tmp_path / "starry_rgba.png"
    cv2.imwrite(str(rgba), cv2.cvtColor(cv2.resize(starry, (128, 101)), cv2.COLOR_BGR2BGRA))
    return grey, rgba


def test_end_to_end_with_squeezenet(offline_weights, style_images, tmp_path):
    content, style = style_images
    logdir = tmp_path / "logs"
    result = CliRunner().invoke(
        main,
        [
            str(content),
            str(style),
            "--model",
            "squeezenet",
            "--size",
            "64",
            "--iterations",
            "6",
            "--save-every",
            "3",
            "--logdir",
            str(logdir),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    report = json.loads(result.stdout)
    output = tmp_path / "tubingen_grey_stylized.png"  # the default name, beside the content
    assert report["output"] == str(output)
    image = cv2.imread(str(output))
    assert image.shape == (48, 64, 3)
    assert report["size"] == [64, 48] and report["model"] == "squeezenet"  # width, height
    assert report["precision"] == "float32"  # the default
    assert report["last"]["total"] < 0.8 * report["first"]["total"]
    assert [entry["iteration"] for entry in report["history"]] == list(range(7))
    assert [p.name for p in sorted(tmp_path.glob("*_stylized_*.png"))] == [
        "tubingen_grey_stylized_00003.png",
        "tubingen_grey_stylized_00006.png",
    ]
    (events,) = logdir.glob("events.out.tfevents.*")
    tags = {
        (value.tag, event.step)
        for event in tf.compat.v1.train.summary_iterator(str(events))
        for value in event.summary.value
    }
    assert {("loss/total", 6), ("loss/style", 0), ("image", 3), ("image", 6)} <= tags


def test_human_output_with_scales_colors_adam_noise_and_bfloat16(
    offline_weights, style_images, tmp_path
):
    content, style = style_images
    output = tmp_path / "out.jpg"
    result = CliRunner().invoke(
        main,
        [
            str(content),
            str(style),
            "-o",
            str(output),
            "--model",
            "squeezenet",
            "--size",
            "96",
            "--scales",
            "2",
            "--iterations",
            "2",
            "--preserve-colors",
            "--optimizer",
            "adam",
            "--init",
            "noise",
            "--seed",
            "1",
            "--precision",
            "bfloat16",
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    first, second = result.stdout.strip().splitlines()
    assert first.startswith(
        f"wrote {output} (96x72, squeezenet bfloat16, 2 x 2 adam iterations in "
    )
    assert second.startswith("loss total ") and " -> " in second
    image = cv2.imread(str(output))
    assert image.shape == (72, 96, 3)
    # The content is grey, and luminance-only transfer keeps its (absent) colours.
    assert np.abs(image.astype(int) - image[..., :1]).max() <= 3


def _run(*args):
    result = CliRunner().invoke(main, [str(arg) for arg in args])
    return result.exit_code, result.stderr.strip().splitlines()


@pytest.fixture
def pictures(tmp_path):
    rng = np.random.default_rng(0)
    good = tmp_path / "good.png"
    cv2.imwrite(str(good), rng.integers(0, 256, (40, 50, 3), dtype=np.uint8))
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), rng.integers(0, 256, (20, 50, 3), dtype=np.uint8))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return good, tiny, corrupt


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing", "missing.jpg: no such file"),
        ("corrupt", "corrupt.jpg: not a readable image"),
        ("tiny", "tiny.png: 50x20 px is too small for a content image"),
        ("no_folder", "does not exist"),
        ("overwrite", "is an input image"),
        ("blend", "--style-blend has 2 weights for 1 style images"),
        ("blend_text", "--style-blend: expected numbers"),
        ("scales", "use a larger --size or fewer --scales"),
        ("suffix", "cannot write an image with suffix '.xyz'"),
        ("exists", "earlier.png: already exists; choose another name or pass --exist-ok"),
        ("snapshot", "new_00004.png: already exists; choose another name or pass --exist-ok"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(pictures, tmp_path, case, expected):
    good, tiny, corrupt = pictures
    args = {
        "missing": [tmp_path / "missing.jpg", good],
        "corrupt": [corrupt, good],
        "tiny": [tiny, good],
        "no_folder": [good, good, "-o", tmp_path / "nowhere" / "out.png"],
        "overwrite": [good, good, "-o", good],
        "blend": [good, good, "--style-blend", "1,2"],
        "blend_text": [good, good, "--style-blend", "a,b"],
        "scales": [good, good, "--size", "64", "--scales", "2"],
        "suffix": [good, good, "-o", tmp_path / "out.xyz"],
        "exists": [good, good, "-o", tmp_path / "earlier.png"],
        "snapshot": [good, good, "-o", tmp_path / "new.png", "--save-every", "2"],
    }[case]
    (tmp_path / "earlier.png").write_bytes(b"an earlier result")
    (tmp_path / "new_00004.png").write_bytes(b"an earlier snapshot")
    code, lines = _run(*args)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]


def test_huge_requests_are_scaled_down_with_a_notice(tmp_path):
    notices = []
    huge = np.zeros((3000, 4000, 3), np.uint8)
    assert transfer.working_size(huge, 0, tmp_path / "big.jpg", notices.append) == 1024
    assert transfer.working_size(huge, 2000, tmp_path / "big.jpg", notices.append) == 1024
    assert transfer.working_size(huge, 384, tmp_path / "big.jpg", notices.append) == 384
    assert len(notices) == 2 and "big.jpg: working at 1024 px" in notices[0]
    assert transfer.working_size(np.zeros((300, 400, 3)), 0, tmp_path, notices.append) == 400


def test_auto_falls_back_to_squeezenet_when_vgg19_cannot_be_had(
    offline_weights, tmp_path, monkeypatch
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: no network")  # what Keras raises

    monkeypatch.setattr(features.keras.utils, "get_file", offline)
    notices = []
    network, weights = features.choose_network("auto", notices.append)
    assert network.name == "squeezenet" and weights == "imagenet"
    assert len(notices) == 1 and "using SqueezeNet 1.1" in notices[0]
    with pytest.raises(WeightsError, match=re.escape(features.VGG19_NOTOP_FILE)):
        features.choose_network("vgg19", notices.append)
    with pytest.raises(InputError, match="--model"):
        features.choose_network("resnet", notices.append)


def test_offline_auto_says_one_line_and_never_tries_the_download(
    offline_weights, style_images, tmp_path, monkeypatch
):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def no_name_server(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(features.socket, "getaddrinfo", no_name_server)
    monkeypatch.setattr(features.keras.utils, "get_file", pytest.fail)
    content, style = style_images
    earlier = tmp_path / "out.png"
    earlier.write_bytes(b"an earlier result, replaced as --exist-ok allows")
    args = [content, style, "--size", "64", "--iterations", "1", "-o", earlier, "--exist-ok"]
    result = CliRunner().invoke(main, [*map(str, args), "--json"])
    assert result.exit_code == 0, result.output + result.stderr
    assert cv2.imread(str(earlier)).shape == (48, 64, 3)
    assert json.loads(result.stdout)["model"] == "squeezenet"
    (line,) = result.stderr.splitlines()
    assert line.startswith("notice: VGG-19 weights (vgg19_weights_tf_dim_ordering_tf_kernels")
    offline = re.escape("storage.googleapis.com cannot be resolved, offline")
    with pytest.raises(WeightsError, match=offline):
        features.vgg19_weights()


def test_ctrl_c_saves_the_best_image_so_far_and_says_where(
    offline_weights, style_images, tmp_path, monkeypatch
):
    optimise = transfer.stylize_image

    def interrupted_after_three(features, content, styles, settings, on_iteration):
        def report(progress):
            on_iteration(progress)
            if progress.iteration == 3:
                raise KeyboardInterrupt

        return optimise(features, content, styles, settings, report)

    monkeypatch.setattr(transfer, "stylize_image", interrupted_after_three)
    content, style = style_images
    output = tmp_path / "partial.png"
    args = [content, style, "--model", "squeezenet", "--size", "64", "--iterations", "6"]
    result = CliRunner().invoke(main, [*map(str, args), "-o", str(output)])
    assert result.exit_code == 130
    assert re.fullmatch(
        rf"error: interrupted at iteration 3 of 6: the best image so far \(64x48, loss "
        rf"[0-9.]+\) is in {re.escape(str(output))}\n",
        result.stderr,
    )
    assert cv2.imread(str(output)).shape == (48, 64, 3)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--iterations", "0"),
        ("--scales", "0"),
        ("--style-scale", "0"),
        ("--learning-rate", "0"),
        ("--tv-weight", "-1"),
        ("--seed", "-1"),
        ("--save-every", "-2"),
        ("--size", "-5"),
    ],
)
def test_numeric_options_out_of_range_name_the_flag(pictures, flag, value):
    good, _, _ = pictures
    code, lines = _run(good, good, flag, value)
    assert code == 2 and lines == [lines[0]]  # one line, no usage block
    assert lines[0].startswith(f"error: Invalid value for '{flag}'")


def test_vgg19_weights_are_found_in_the_keras_cache_then_the_weights_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(features.keras.utils, "get_file", pytest.fail)  # never downloads here
    folder = tmp_path / "weights" / "vgg"
    folder.mkdir(parents=True)
    in_folder = folder / features.VGG19_NOTOP_FILE
    in_folder.write_bytes(b"stand-in")
    monkeypatch.setenv("CONVNET_APPS_WEIGHTS_DIR", str(tmp_path / "weights"))
    monkeypatch.setenv("CONVNET_APPS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert features.vgg19_weights() == in_folder
    in_keras_cache = tmp_path / "keras" / "models" / features.VGG19_NOTOP_FILE
    in_keras_cache.parent.mkdir(parents=True)
    in_keras_cache.write_bytes(b"stand-in")
    assert features.vgg19_weights() == in_keras_cache
    network, weights = features.choose_network("auto", pytest.fail)
    assert network.name == "vgg19" and weights == in_keras_cache


def test_unknown_layer_is_one_line(offline_weights, pictures):
    good, _, _ = pictures
    code, lines = _run(good, good, "--model", "squeezenet", "--style-layers", "fire2_concat,fire99")
    assert code == 2
    assert len(lines) == 1 and "squeezenet11 has no layer fire99" in lines[0]


def test_bfloat16_network_is_opt_in_and_close_to_float32(offline_weights):
    # SqueezeNet's real weights on a smooth 64x64 image: the bfloat16 network (8-bit mantissa)
    # must give float32 activations within a few percent of float32's, differ from them (so
    # it really ran in bfloat16), and leave the global Keras policy as it found it.
    network = features.NETWORKS["squeezenet"]
    image = cv2.GaussianBlur(np.random.default_rng(0).uniform(0, 255, (64, 64, 3)), (0, 0), 3)
    image = tf.constant(image[np.newaxis].astype(np.float32))
    exact, *_ = features.build_features(network, "imagenet")
    fast, *_ = features.build_features(network, "imagenet", precision="bfloat16")
    assert keras.config.dtype_policy().name == "float32"
    for reference, approximate in zip(exact(image), fast(image), strict=True):
        assert approximate.dtype == tf.float32
        error = np.linalg.norm(approximate - reference) / np.linalg.norm(reference)
        assert 1e-4 < error < 0.05
    with pytest.raises(InputError, match="--precision must be one of float32, bfloat16"):
        features.build_features(network, "imagenet", precision="float16")
