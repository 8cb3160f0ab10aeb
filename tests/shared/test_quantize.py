"""int8 presets: applied to a float OpenVINO model they run its convolutions in int8, close to the
float outputs; a preset for other weights or another graph is refused."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from shared import quantize, runtime
from shared.errors import WeightsError

openvino = pytest.importorskip("openvino")


def small_network() -> keras.Model:
    """Convolution, ReLU, depthwise convolution, a residual sum and a dense layer.

    Normal weights, as trained ones are (most far below the largest): uniform random weights
    overflow x86's 16-bit sums of int8 products, which NNCF (and so a preset) guards against in
    the first layer only.
    """
    keras.utils.set_random_seed(0)
    init = {"kernel_initializer": "he_normal"}
    image = keras.Input((16, 16, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", **init)(image)
    y = keras.layers.DepthwiseConv2D(3, padding="same", depthwise_initializer="he_normal")(x)
    x = keras.layers.Add()([x, keras.layers.Conv2D(8, 1, **init)(y)])
    return keras.Model(image, keras.layers.Dense(4, **init)(keras.layers.Flatten()(x)))


def images(count: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (count, 16, 16, 3)).astype(np.float32)


def min_max_preset(model, samples: np.ndarray, sha256: str = "abc") -> dict:
    """A preset with every weighted op's input quantised to the range ``samples`` reach there
    (what NNCF's calibration does, without NNCF): per channel before a depthwise convolution."""
    ops = quantize.weighted_ops(model)
    where, _ = quantize.op_places(model)
    probe = openvino.Model([op.input_value(0) for op in ops], model.get_parameters())
    request = openvino.Core().compile_model(probe, "CPU").create_infer_request()
    values = request.infer({0: samples})
    quantisers = []
    for index, op in enumerate(ops):
        value = values[index]
        per_channel = op.get_type_name() == "GroupConvolution"
        axes = tuple(a for a in range(value.ndim) if a != 1) if per_channel else None
        low, high = (np.atleast_1d(value.min(axis=axes)), np.atleast_1d(value.max(axis=axes)))
        readers = [[*where[op.get_instance_id()], 0]]
        quantisers.append({"readers": readers, "low": low.tolist(), "high": high.tolist()})
    return {"format": 1, "source_sha256": sha256, "calibration": "test", "quantisers": quantisers}


@pytest.fixture(scope="module")
def network():
    return small_network()


def test_a_preset_runs_the_convolutions_in_int8_close_to_float(network):
    core = openvino.Core()
    float_model = runtime.openvino_ir(network)
    preset = min_max_preset(float_model, images(32, seed=1))
    int8_model = quantize.apply_preset(runtime.openvino_ir(network), preset)
    test = images(8, seed=2)  # other images than the calibration's
    expected = core.compile_model(float_model, "CPU").create_infer_request().infer({0: test})[0]
    compiled = core.compile_model(int8_model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    ours = compiled.create_infer_request().infer({0: test})[0]
    error = np.abs(ours - expected).max() / np.ptp(expected)
    assert 0 < error < 0.05  # quantised (not identical), yet close
    infos = [op.get_rt_info() for op in compiled.get_runtime_model().get_ops()]
    precisions = {(i["layerType"].astype(str), i["runtimePrecision"].astype(str)) for i in infos}
    assert {("Convolution", "u8"), ("Convolution", "i8")} & precisions


def test_a_preset_for_another_graph_or_other_weights_is_refused(network, tmp_path: Path):
    preset = min_max_preset(runtime.openvino_ir(network), images(4, seed=1), sha256="abc")
    text = json.dumps(preset)
    assert quantize.read_preset(text, "abc", "p.json") == preset
    with pytest.raises(WeightsError, match=r"p\.json: a quantisation preset for other weights"):
        quantize.read_preset(text, "def", "p.json")
    with pytest.raises(WeightsError, match=r"p\.json: not a readable quantisation preset"):
        quantize.read_preset(text[:-5], "abc", "p.json")
    with pytest.raises(WeightsError, match="format 2"):
        quantize.read_preset(json.dumps({**preset, "format": 2}), "abc", "p.json")
    preset["quantisers"][-1]["readers"] = [["MatMul", 7, 0]]  # there is one MatMul
    with pytest.raises(WeightsError, match="does not fit this model"):
        quantize.apply_preset(runtime.openvino_ir(network), preset)


def test_the_runtime_compiles_a_quantised_model_once_and_never_on_tensorflow(
    network, monkeypatch, tmp_path: Path
):
    monkeypatch.setenv("CONVNET_APPS_CACHE", str(tmp_path / "cache"))
    source = tmp_path / "weights.bin"
    source.write_bytes(b"weights")
    preset = min_max_preset(runtime.openvino_ir(network), images(16, seed=1))

    def build():
        return network, {}

    def load(**options):
        return runtime.load_model("small", [source], "v1", build, notify=print, **options)

    int8, float32 = load(quantization=preset), load()
    test = images(4, seed=3)
    assert int8.runtime == "openvino"
    assert 0 < np.abs(int8(test)[0] - float32(test)[0]).max() < 0.05 * np.ptp(float32(test)[0])
    assert len(list((tmp_path / "cache" / "compiled").iterdir())) == 2  # keyed apart
    with pytest.raises(runtime.RuntimeUnavailable, match="small in int8 runs on OpenVINO only"):
        load(quantization=preset, runtime="tensorflow")
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    with pytest.raises(runtime.RuntimeUnavailable, match="OpenVINO is not installed"):
        load(quantization=preset)
