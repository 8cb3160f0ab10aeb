"""Darknet cfg/weights reading, error messages and the layers Keras has no twin for."""

from __future__ import annotations

import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from darknet_oracle import bgr_blob, opencv_forward, opencv_net, random_parameters

from apps.car_detection.cfg import format_cfg, parse_cfg, read_cfg
from apps.car_detection.darknet import (
    build_model,
    load_darknet,
    plan_network,
    read_darknet_weights,
    write_darknet_weights,
)
from apps.car_detection.layers import DarknetReorg, DetectionHead
from shared.errors import InputError, WeightsError

HEAD = """
[convolutional]
filters=21
size=1
stride=1
pad=1
activation=linear

[yolo]
mask=0,1,2
anchors=4,5, 9,7, 12,16
classes=2
num=3
"""

# Odd sizes, stride-2 convolutions, explicit padding, grouped (not depthwise) convolutions,
# every activation, max pools whose Darknet padding differs from Keras 'same', a route with
# groups, a shortcut.
FEATURES_CFG = (
    """
[net]
width=45
height=27
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=relu

[convolutional]
filters=8
size=3
stride=1
padding=2
activation=leaky

[convolutional]
filters=8
size=3
stride=1
pad=1
groups=2
activation=swish

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
groups=8
activation=mish

[maxpool]
size=3
stride=2

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=logistic

[route]
layers=-1
groups=2
group_id=1

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[shortcut]
from=-2
activation=leaky

[maxpool]
size=2
stride=1

[route]
layers=-1,-4
"""
    + HEAD
)


def write_random_weights(tmp_path: Path, text: str, seed: int = 3) -> Path:
    plan = plan_network(parse_cfg(text))
    path = tmp_path / "net.weights"
    write_darknet_weights(path, plan, random_parameters(plan, seed))
    return path


def test_parse_cfg_keeps_order_lines_and_strips_whitespace():
    text = "\ufeff# comment\r\n[net]\r\nwidth = 64\n\n[yolo]\n anchors = 1, 2,  3,4 \n; x\n"
    sections = parse_cfg(text)
    assert [(s.type, s.line, s.index) for s in sections] == [("net", 2, -1), ("yolo", 5, 0)]
    assert sections[1].get_floats("anchors") == [1.0, 2.0, 3.0, 4.0]
    assert sections[0].get_int("width") == 64
    assert parse_cfg(format_cfg(sections))[1].options == sections[1].options


def test_short_section_names_mean_the_same_layers():
    sections = parse_cfg("[network]\nwidth=8\n[conv]\nsize=1\n[max]\n[avg]\n")
    assert [s.type for s in sections] == ["net", "convolutional", "maxpool", "avgpool"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("classes=2", "classes=2\nnew_coords=1"), "new_coords=1"),
        (("[yolo]", "[region]"), "only coords=4 with softmax=1"),
        (("activation=linear", "activation=tanh"), "activation 'tanh' not supported"),
        (("mask=0,1,2", "mask=0,1,5"), r"mask \[0, 1, 5\] refers to anchors beyond num=3"),
        (("pad=1", "pad=1\ngroups=2"), "groups=2 must divide the 3 input channels"),
        (("[yolo]", "[dropout]\nprobability=1.5\n[yolo]"), r"probability must be in \[0, 1\)"),
    ],
)
def test_unsupported_or_inconsistent_options_are_named(change, message):
    text = "[net]\nwidth=8\nheight=8\n" + HEAD.replace(*change)
    with pytest.raises(InputError, match=message):
        plan_network(parse_cfg(text))


def test_cfg_errors_name_file_line_and_section(tmp_path: Path):
    with pytest.raises(InputError, match=r"<cfg>:3: expected key=value"):
        parse_cfg("[net]\nwidth=1\nnonsense\n")
    with pytest.raises(InputError, match=r"<cfg>:5: 'size' given twice in <cfg>:3 \[maxpool\]"):
        parse_cfg("[net]\nwidth=1\n[maxpool]\nsize=2\nsize=3\n")
    with pytest.raises(InputError, match=r"must start with a \[net\]"):
        parse_cfg("[convolutional]\nsize=1\n")
    with pytest.raises(InputError, match=r"<cfg>:4 \[convolutional\]: size=x is not a number"):
        plan_network(parse_cfg("[net]\nwidth=8\nheight=8\n[convolutional]\nsize=x\n"))
    with pytest.raises(InputError, match=r"cfg file not found"):
        read_cfg(tmp_path / "missing.cfg")


def test_unsupported_section_names_its_line():
    text = "[net]\nwidth=8\nheight=8\n\n[connected]\noutput=10\n" + HEAD
    with pytest.raises(InputError, match=r"<cfg>:5 \[connected\]: section type not supported"):
        plan_network(parse_cfg(text))


def test_route_to_a_missing_layer_and_a_mismatched_head_are_input_errors():
    with pytest.raises(InputError, match=r"\[route\]: refers to layer -3"):
        plan_network(parse_cfg("[net]\nwidth=8\nheight=8\n[route]\nlayers=-3\n" + HEAD))
    bad_head = HEAD.replace("classes=2", "classes=3")
    with pytest.raises(InputError, match=r"has 21 channels but 3 anchors x \(5 \+ 3 classes\)"):
        plan_network(parse_cfg("[net]\nwidth=8\nheight=8\n" + bad_head))


def test_weights_of_the_wrong_length_give_expected_and_actual_bytes(tmp_path: Path):
    text = "[net]\nwidth=8\nheight=8\n" + HEAD
    plan = plan_network(parse_cfg(text))
    path = write_random_weights(tmp_path, text)
    assert path.stat().st_size == 20 + 4 * (21 + 21 * 3)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(WeightsError, match=r"expected 356 bytes .* found 352 bytes"):
        read_darknet_weights(path, plan)
    with pytest.raises(WeightsError, match=r"weights file not found"):
        read_darknet_weights(tmp_path / "none.weights", plan)
    path.write_bytes(struct.pack("<3iq", 1001, 0, 0, 0) + bytes(4 * 84))
    with pytest.raises(WeightsError, match=r"transposed Darknet weights"):
        read_darknet_weights(path, plan)
    path.write_bytes(b"GIF89a")
    with pytest.raises(WeightsError, match=r"6 bytes is too short"):
        read_darknet_weights(path, plan)


def test_old_header_with_32_bit_seen_count_is_read(tmp_path: Path):
    text = "[net]\nwidth=8\nheight=8\n" + HEAD
    plan = plan_network(parse_cfg(text))
    parameters = random_parameters(plan, seed=1)
    new, old = tmp_path / "new.weights", tmp_path / "old.weights"
    write_darknet_weights(new, plan, parameters, version=(0, 2, 0), seen=123456789012)
    write_darknet_weights(old, plan, parameters, version=(0, 1, 0), seen=32000)
    assert old.stat().st_size == new.stat().st_size - 4
    assert struct.unpack_from("<3iq", new.read_bytes()) == (0, 2, 0, 123456789012)
    for path in (new, old):
        (arrays,) = read_darknet_weights(path, plan)
        np.testing.assert_array_equal(arrays["kernel"], parameters[0]["kernel"])
        np.testing.assert_array_equal(arrays["bias"], parameters[0]["bias"])


def darknet_reorg_reference(nchw: np.ndarray, stride: int) -> np.ndarray:
    """Darknet's reorg_cpu(forward=0) transcribed loop by loop, for one NCHW image."""
    channels, height, width = nchw.shape
    source = nchw.reshape(-1)
    out = np.empty_like(source)
    out_channels = channels // (stride * stride)
    for k in range(channels):
        for j in range(height):
            for i in range(width):
                in_index = i + width * (j + height * k)
                c2, offset = k % out_channels, k // out_channels
                w2 = i * stride + offset % stride
                h2 = j * stride + offset // stride
                out_index = w2 + width * stride * (h2 + height * stride * c2)
                out[in_index] = source[out_index]
    return out.reshape(channels * stride * stride, height // stride, width // stride)


def test_reorg_follows_darknets_loop_not_space_to_depth():
    image = np.arange(8 * 4 * 6, dtype=np.float32).reshape(8, 4, 6)
    expected = darknet_reorg_reference(image, 2)
    ours = np.asarray(DarknetReorg(2)(image.transpose(1, 2, 0)[None]))[0].transpose(2, 0, 1)
    np.testing.assert_array_equal(ours, expected)
    import tensorflow as tf

    space_to_depth = np.asarray(tf.nn.space_to_depth(image.transpose(1, 2, 0)[None], 2))[0]
    assert not np.array_equal(space_to_depth.transpose(2, 0, 1), expected)


def random_images(count: int, width: int, height: int) -> list[np.ndarray]:
    """Smooth random BGR images: structure at several scales, like a photo, no files needed."""
    rng = np.random.default_rng(11)
    images = []
    for _ in range(count):
        coarse = rng.integers(0, 256, (height // 4 + 1, width // 4 + 1, 3), dtype=np.uint8)
        smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
        images.append(cv2.add(smooth, rng.integers(0, 40, smooth.shape, dtype=np.uint8)))
    return images


def test_every_layer_kind_equals_opencv_on_odd_sizes(tmp_path: Path):
    weights = write_random_weights(tmp_path, FEATURES_CFG)
    sections = parse_cfg(FEATURES_CFG)
    plan = plan_network(sections)
    kinds = {type(layer).__name__ for layer in build_model(plan).model.layers}
    assert {"DarknetMaxPool", "ChannelGroup", "ZeroPadding2D", "DepthwiseConv2D"} <= kinds
    blob = bgr_blob(random_images(2, 100, 60), 45, 27)
    theirs = opencv_forward(opencv_net(sections, weights), blob)
    for fold in (True, False):
        model = build_model(plan, read_darknet_weights(weights, plan), fold_batch_norm=fold)
        (ours,) = model.predict_heads(blob.transpose(0, 2, 3, 1))
        np.testing.assert_allclose(ours, theirs[0].reshape(ours.shape), rtol=0, atol=1e-5)


def test_global_average_pool_then_head_on_a_one_cell_grid(tmp_path: Path):
    text = "[net]\nwidth=32\nheight=32\n[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\n"
    text += "activation=leaky\n[avgpool]\n" + HEAD
    weights = write_random_weights(tmp_path, text)
    sections = parse_cfg(text)
    blob = bgr_blob(random_images(2, 50, 40), 32, 32)
    (theirs,) = opencv_forward(opencv_net(sections, weights), blob)
    model = load_darknet(sections, weights)
    (ours,) = model.predict_heads(blob.transpose(0, 2, 3, 1))
    assert ours.shape == (2, 3, 7)
    np.testing.assert_allclose(ours, theirs.reshape(ours.shape), rtol=0, atol=1e-5)


def test_input_size_override_and_keras_file_round_trip(tmp_path: Path):
    """The custom layers serialise, so a converted model can be saved and fine-tuned later."""
    import keras

    weights = write_random_weights(tmp_path, FEATURES_CFG)
    cfg = tmp_path / "features.cfg"
    cfg.write_text(FEATURES_CFG)
    model = load_darknet(cfg, weights, input_size=(61, 35), fold_batch_norm=False)
    assert (model.width, model.height, model.classes) == (61, 35, 2)
    model.model.save(tmp_path / "features.keras")
    restored = keras.saving.load_model(tmp_path / "features.keras")
    images = np.random.default_rng(0).random((2, 35, 61, 3), dtype=np.float32)
    np.testing.assert_allclose(restored(images), model.predict_heads(images)[0], atol=1e-6)
    # The raw maps plus the recorded head arguments decode to the same rows (what a loss uses).
    plan = plan_network(parse_cfg(FEATURES_CFG), (61, 35))
    raw = build_model(plan, fold_batch_norm=False, decode=False)
    raw.model.set_weights(restored.get_weights())
    assert model.heads == raw.heads and model.heads[0]["anchors"] == [[4, 5], [9, 7], [12, 16]]
    (raw_map,) = raw.predict_heads(images)
    # 61x35 -> conv s2: 31x18 -> padding=2: 33x20 -> pool 2/2: 17x10 -> pool 3/2: 9x5
    assert raw_map.shape == (2, 5, 9, 21)
    decoded = DetectionHead(**raw.heads[0])(raw_map)
    np.testing.assert_allclose(decoded, model.predict_heads(images)[0], atol=1e-6)
    pixels = (images * 255).round().astype(np.uint8)
    np.testing.assert_allclose(
        model.predict_heads(pixels)[0], model.predict_heads(pixels / np.float32(255))[0], atol=1e-6
    )
    with pytest.raises(ValueError, match="uint8 pixels or float32"):
        model.predict_heads(images.astype(np.float64))


def test_an_input_size_the_network_cannot_take_is_one_clear_error(weights_dir: Path):
    cfg = read_cfg(weights_dir / "yolo-fastest" / "yolo-fastest-1.1-xl.cfg")
    assert plan_network(cfg, (416, 256)).layers[-1].shape == (16, 26, 255)
    with pytest.raises(InputError, match=r"\[route\]: joins layers of different sizes"):
        plan_network(cfg, (330, 330))
