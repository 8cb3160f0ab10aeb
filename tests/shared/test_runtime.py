"""The inference runtime: OpenVINO equals Keras, caches what it compiled, falls back to TensorFlow.

A small two-output network with real arithmetic (convolution, pooling, dense, softmax) on uint8
input stands in for the apps' models; the detector and the face embedder have their own parity
tests on real weights.
"""

from __future__ import annotations

import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from shared import runtime
from shared.errors import UserError, WeightsError

TOLERANCE = 1e-4


def small_network(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    pixels = keras.Input((24, 32, 3), dtype="uint8")
    x = keras.layers.Rescaling(1 / 255)(pixels)
    x = keras.layers.Conv2D(8, 3, strides=2, activation="relu")(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(
        pixels, [keras.layers.Dense(5, activation="softmax")(x), keras.layers.Dense(3)(x)]
    )


@pytest.fixture
def cache(monkeypatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CONVNET_APPS_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """The file the model is 'built from': its digest keys the cache."""
    path = tmp_path / "weights.bin"
    path.write_bytes(b"seed 0")
    return path


class Builder:
    """Counts builds, so a test can tell a cache hit from a rebuild."""

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.calls = 0
        self.model = small_network(seed)

    def __call__(self):
        self.calls += 1
        return self.model, {"classes": 5}


def pixels(count: int = 4) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 256, (count, 24, 32, 3), dtype=np.uint8)


def load(source: Path, build, runtime_name=None, variant="v1", notes=None, hint="latency"):
    notes = [] if notes is None else notes
    return runtime.load_model("small", [source], variant, build, runtime_name, hint, notes.append)


def test_openvino_equals_keras_and_a_second_load_reads_the_cache(cache: Path, source: Path):
    build, notes = Builder(), []
    model = load(source, build, notes=notes)
    assert model.runtime == "openvino" and model.metadata == {"classes": 5}
    assert len(notes) == 1 and "compiling small for OpenVINO once" in notes[0]
    images = pixels()
    expected = [np.asarray(output) for output in build.model(images)]
    for batch in (images, images[:1]):  # any batch size
        outputs = model(batch)
        assert [o.shape for o in outputs] == [(len(batch), 5), (len(batch), 3)]
        for ours, keras_output in zip(outputs, expected, strict=True):
            np.testing.assert_allclose(ours, keras_output[: len(batch)], rtol=0, atol=TOLERANCE)
    assert np.ptp(expected[1]) > 1e-3  # the outputs vary, so equality means something

    # Read from the cache, and with the batch split one image per stream: the same outputs.
    again_notes = []
    again = load(source, build, notes=again_notes, hint="throughput")
    assert build.calls == 1 and again_notes == [] and again.metadata == {"classes": 5}
    for ours, keras_output in zip(again(images), expected, strict=True):
        np.testing.assert_allclose(ours, keras_output, rtol=0, atol=TOLERANCE)
    (entry,) = (cache / "compiled").iterdir()  # written under a temporary name, then renamed
    assert entry.name.startswith("small-")
    assert {"model.xml", "model.bin", "metadata.json"} <= {p.name for p in entry.iterdir()}


def test_the_cache_is_keyed_by_the_source_digest_variant_and_openvino_version(cache, source):
    def folder(variant="v1", version="2026.4.1"):
        return runtime.compiled_cache_folder("small", [source], variant, version)

    first = folder()
    assert first.parent == cache / "compiled" and first.name.startswith("small-")
    assert folder() == first
    assert len({first, folder(variant="v2"), folder(version="2026.5.0")}) == 3
    source.write_bytes(b"other weights")
    assert folder() != first


def test_tensorflow_runs_the_same_model_when_asked(cache: Path, source: Path):
    build = Builder()
    model = load(source, build, "tensorflow")
    assert model.runtime == "tensorflow" and not (cache / "compiled").exists()
    np.testing.assert_allclose(model(pixels())[0], build.model(pixels())[0], atol=1e-6)


def test_without_openvino_everything_runs_on_tensorflow(monkeypatch, cache, source):
    monkeypatch.setitem(sys.modules, "openvino", None)  # makes `import openvino` fail
    build, notes = Builder(), []
    model = load(source, build, notes=notes)
    assert model.runtime == "tensorflow" and build.calls == 1
    assert notes == [
        "note: OpenVINO is not installed (import of openvino halted; None in sys.modules); "
        "running on TensorFlow"
    ]
    np.testing.assert_allclose(model(pixels())[1], build.model(pixels())[1], atol=1e-6)
    with pytest.raises(runtime.RuntimeUnavailable, match="OpenVINO is not installed"):
        load(source, build, "openvino")


def test_a_model_openvino_refuses_runs_on_tensorflow_built_once(monkeypatch, cache, source):
    import openvino

    def refuse(_model, path, **_options):
        Path(path).write_text("<half an IR")
        raise RuntimeError("Exception from src/frontend.cpp:1:\nNo conversion rule for Foo\n")

    monkeypatch.setattr(openvino, "save_model", refuse)
    build, notes = Builder(), []
    model = load(source, build, notes=notes)
    assert model.runtime == "tensorflow" and build.calls == 1
    assert notes[-1] == (
        "note: OpenVINO cannot run small (No conversion rule for Foo); running on TensorFlow"
    )
    assert list((cache / "compiled").iterdir()) == []  # nothing half-written is left
    np.testing.assert_allclose(model(pixels())[0], build.model(pixels())[0], atol=1e-6)


def test_a_missing_source_file_is_a_weights_error(cache: Path, tmp_path: Path):
    with pytest.raises(WeightsError, match=r"gone\.bin: no such file to build small from"):
        load(tmp_path / "gone.bin", Builder())
    with pytest.raises(UserError, match="runtime must be one of"):
        load(tmp_path / "gone.bin", Builder(), "onnx")
