"""The ONNX importer against OpenCV's own ONNX reader (``cv2.dnn``), on small graphs built here
with random weights, operator by operator; the real embedders' parity is in
``tests/apps/face_access/test_embedders.py``."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from shared.backbones.onnx_import import onnx_to_keras  # noqa: E402
from shared.errors import WeightsError  # noqa: E402

RNG = np.random.default_rng(7)


def _model(nodes, initializers, shape=(1, 4, 10, 10), opset=21):
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.asarray(v), name) for name, v in initializers.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    # OpenCV's reader wants the output's shape: let ONNX infer it.
    return onnx.shape_inference.infer_shapes(model)


def _weights(*shape):
    return RNG.normal(0, 0.5, shape).astype(np.float32)


def _compare(model, shape=(1, 4, 10, 10)) -> float:
    """Max |difference| between OpenCV on the ONNX file and Keras on the imported model."""
    x = RNG.normal(0, 1, shape).astype(np.float32)
    net = cv2.dnn.readNetFromONNX(np.frombuffer(model.SerializeToString(), np.uint8))
    net.setInput(x)
    expected = net.forward()
    keras_model = onnx_to_keras(model)
    got = np.asarray(keras_model.predict_on_batch(x.transpose(0, 2, 3, 1)))
    if got.ndim == 4:
        got = got.transpose(0, 3, 1, 2)
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max())


def test_conv_bn_prelu_depthwise_and_strided_padding_match_opencv():
    nodes = [
        helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node(
            "BatchNormalization", ["c1", "g", "beta", "mean", "var"], ["n1"], epsilon=1e-3
        ),
        helper.make_node("PRelu", ["n1", "slope"], ["p1"]),
        helper.make_node("Conv", ["p1", "wd"], ["c2"], group=6, pads=[1, 1, 1, 1]),
        helper.make_node("Clip", ["c2", "lo", "hi"], ["r"]),
        helper.make_node("Add", ["r", "p1"], ["y"]),
    ]
    initializers = {
        "w1": _weights(6, 4, 3, 3),
        "b1": _weights(6),
        "g": _weights(6) + 1,
        "beta": _weights(6),
        "mean": _weights(6),
        "var": np.abs(_weights(6)) + 0.5,
        "slope": _weights(6, 1, 1),
        "wd": _weights(6, 1, 3, 3),
        "lo": np.float32(0),
        "hi": np.float32(6),
    }
    model = _model(nodes, initializers)
    assert _compare(model) < 1e-5
    # The batch norm after the first convolution was folded into it.
    kinds = [type(layer).__name__ for layer in onnx_to_keras(model).layers]
    assert "BatchNormalization" not in kinds and kinds.count("Conv2D") == 1


def test_grouped_conv_pooling_flatten_and_gemm_match_opencv():
    nodes = [
        helper.make_node("Conv", ["x", "w"], ["c"], group=2, pads=[0, 0, 0, 0]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("MaxPool", ["r"], ["m"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Sub", ["m", "offset"], ["s"]),
        helper.make_node("Mul", ["s", "scale"], ["t"]),
        helper.make_node("Flatten", ["t"], ["f"]),
        helper.make_node("Gemm", ["f", "fc", "fb"], ["g"], transB=1, alpha=0.5),
        helper.make_node("BatchNormalization", ["g", "g1", "b1", "m1", "v1"], ["y"]),
    ]
    initializers = {
        "w": _weights(8, 2, 3, 3),
        "offset": np.float32([0.25]),
        "scale": _weights(8, 1, 1),
        "fc": _weights(5, 8 * 4 * 4),
        "fb": _weights(5),
        "g1": _weights(5) + 1,
        "b1": _weights(5),
        "m1": _weights(5),
        "v1": np.abs(_weights(5)) + 0.5,
    }
    assert _compare(_model(nodes, initializers)) < 1e-5


def test_global_pool_reshape_matmul_and_a_lone_batch_norm_match_opencv():
    nodes = [
        helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[3, 3], strides=[1, 1]),
        helper.make_node("BatchNormalization", ["a", "g", "b", "m", "v"], ["n"]),
        helper.make_node("GlobalAveragePool", ["n"], ["p"]),
        helper.make_node("Reshape", ["p", "shape"], ["f"]),
        helper.make_node("MatMul", ["f", "w"], ["y"]),
    ]
    initializers = {
        "g": _weights(4) + 1,
        "b": _weights(4),
        "m": _weights(4),
        "v": np.abs(_weights(4)) + 0.5,
        "shape": np.array([1, -1], np.int64),
        "w": _weights(4, 3),
    }
    model = _model(nodes, initializers)
    assert _compare(model) < 1e-5
    # Nothing to fold it into: it stays a Keras batch normalisation.
    kinds = [type(layer).__name__ for layer in onnx_to_keras(model).layers]
    assert "BatchNormalization" in kinds


def test_block_quantized_weights_are_dequantized_as_onnx_defines():
    """int8 weights with one scale and zero point per block of 4 along axis 1 (SFace's
    layout): checked against the formula, then through a convolution against OpenCV."""
    quantized = RNG.integers(-128, 128, (6, 36), dtype=np.int8)
    scales = np.abs(_weights(6, 9)) / 50
    zeros = RNG.integers(-20, 20, (6, 9), dtype=np.int8)
    nodes = [
        helper.make_node(
            "DequantizeLinear", ["q", "s", "z"], ["wf"], axis=1, block_size=4, name="dq"
        ),
        helper.make_node("Reshape", ["wf", "wshape"], ["w"]),
        helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
    ]
    initializers = {"q": quantized, "s": scales, "z": zeros, "wshape": np.array([6, 4, 3, 3])}
    model = _model(nodes, initializers)
    expected = (quantized.astype(np.float32) - np.repeat(zeros, 4, axis=1)) * np.repeat(
        scales, 4, axis=1
    )
    conv = onnx_to_keras(model).layers[-1]
    np.testing.assert_allclose(
        conv.get_weights()[0], expected.reshape(6, 4, 3, 3).transpose(2, 3, 1, 0), rtol=1e-6
    )
    assert _compare(model) < 1e-5


def test_unknown_operator_fails_naming_operator_and_node():
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("Softmax", ["r"], ["y"], name="head/softmax"),
    ]
    with pytest.raises(WeightsError, match=r"node 'head/softmax' \(Softmax\): operator not "):
        onnx_to_keras(_model(nodes, {}))


def test_unreadable_file_is_one_error_naming_it(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"not a protobuf at all \xff\xfe")
    with pytest.raises(WeightsError, match=f"{bad}: not a readable ONNX model"):
        onnx_to_keras(bad)
    with pytest.raises(WeightsError, match="no such ONNX file"):
        onnx_to_keras(tmp_path / "missing.onnx")
