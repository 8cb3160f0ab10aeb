"""Inference for Keras models: compiled by OpenVINO where it works, TensorFlow otherwise.

``load_model(name, sources, variant, build)`` returns an ``InferenceModel``: call it on a NumPy
batch and get the model's outputs as a list of NumPy arrays, whichever runtime runs it.
``build()`` returns the Keras model (whose input takes exactly the arrays the caller will pass,
e.g. uint8 pixels with the scaling inside) and a small dict of facts the caller needs about it
(input size, classes); the facts come back as ``InferenceModel.metadata``.

- ``openvino``: the Keras model is traced once by TensorFlow, converted to OpenVINO IR and saved
  in the cache, ``<cache>/compiled/<name>-<key>/`` (``shared.weights.cache_dir``), written under
  a temporary name and renamed. The key is a digest of the sha256 of every source file (weights,
  cfg), the caller's ``variant`` (input size, converter version) and the OpenVINO version, so
  other weights, another size or another OpenVINO never reuse an entry. A later run reads the IR
  (OpenVINO's compiled-blob cache sits beside it) and never imports TensorFlow. A run that
  builds the entry says so in one line (``notify``).
- ``tensorflow``: the Keras model traced by ``tf.function`` (graph mode, any batch size).

``runtime=None`` means OpenVINO where it is installed and accepts the model, TensorFlow
otherwise, with one line saying why. Asking for ``"openvino"`` makes its failure an error.
Float32 throughout: OpenVINO is told not to lower the precision (``INFERENCE_PRECISION_HINT``),
so both runtimes give the same outputs to about 1e-6. A model given a ``quantization`` preset
(``shared.quantize``) runs its convolutions in int8 instead: OpenVINO only (TensorFlow would
give other outputs), the preset part of the cache key. ``hint="throughput"`` runs the images of
a batch one per core at once (a video), ``"latency"`` one image over all cores (a door check).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import UserError, WeightsError
from shared.weights import cache_dir, file_digest

RUNTIMES = ("openvino", "tensorflow")
MODEL_FILE = "model.xml"  # OpenVINO writes the weights beside it as model.bin
METADATA_FILE = "metadata.json"
# OpenVINO's two ways of using the cores: "latency" spreads one input over all of them (one
# face at the door), "throughput" runs one input per core (the frames of a video).
HINTS = ("latency", "throughput")

Build = Callable[[], tuple[Any, dict]]  # () -> (keras.Model, metadata)


class RuntimeUnavailable(UserError):
    """The runtime asked for cannot run this model here (not installed, or it refused it)."""


def _stderr_line(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class InferenceModel:
    """A model ready to run: ``model(batch)`` -> list of output arrays, in the Keras order."""

    runtime: str
    metadata: dict
    run: Callable[[np.ndarray], list[np.ndarray]] = field(repr=False)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.run(batch)


def _cache_key(sources: Sequence[Path], variant: str, openvino_version: str) -> str:
    parts = {
        "sources": [file_digest(Path(source)) for source in sources],
        "variant": variant,
        "openvino": openvino_version,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def compiled_cache_folder(
    name: str, sources: Sequence[Path], variant: str, openvino_version: str
) -> Path:
    """The cache entry of a model: IR, metadata and OpenVINO's blob cache."""
    key = _cache_key(sources, variant, openvino_version)
    return cache_dir() / "compiled" / f"{name}-{key}"


def _tensorflow_function(model) -> Callable:
    """The Keras model as a graph-mode function of a NumPy batch (any batch size).

    Graph mode without XLA: XLA measured 5-14x slower on this kind of CPU.
    """
    import tensorflow as tf

    (spec,) = model.inputs
    signature = tf.TensorSpec((None, *spec.shape[1:]), tf.as_dtype(spec.dtype))
    return tf.function(lambda batch: model(batch, training=False), input_signature=[signature])


def tensorflow_model(model, metadata: dict) -> InferenceModel:
    """Run a Keras model on TensorFlow, returning NumPy arrays like the OpenVINO runner."""
    function = _tensorflow_function(model)

    def run(batch: np.ndarray) -> list[np.ndarray]:
        outputs = function(batch)
        outputs = outputs if isinstance(outputs, list | tuple) else [outputs]
        return [np.asarray(output) for output in outputs]

    return InferenceModel("tensorflow", metadata, run)


def _compile(openvino, folder: Path, hint: str) -> Callable[[np.ndarray], list[np.ndarray]]:
    """Compile the cached IR for the CPU and return a function of a batch.

    With the throughput hint OpenVINO runs several single-thread streams; a batch is then split
    into single images, one per stream at a time, which keeps every core busy without the
    per-layer synchronisation of one image spread over all cores.
    """
    core = openvino.Core()
    core.set_property({"CACHE_DIR": str(folder / "blobs")})
    config = {"PERFORMANCE_HINT": hint.upper(), "INFERENCE_PRECISION_HINT": "f32"}
    compiled = core.compile_model(str(folder / MODEL_FILE), "CPU", config)
    outputs = range(len(compiled.outputs))
    requests = openvino.AsyncInferQueue(
        compiled, compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")
    )

    def keep(request, place: tuple[list, int]) -> None:
        results, index = place
        results[index] = [request.get_output_tensor(i).data.copy() for i in outputs]

    requests.set_callback(keep)

    def run(batch: np.ndarray) -> list[np.ndarray]:
        if len(requests) == 1 or len(batch) == 1:
            request = requests[0]
            request.infer({0: batch})
            return [request.get_output_tensor(i).data.copy() for i in outputs]
        results: list = [None] * len(batch)
        for index in range(len(batch)):
            requests.start_async({0: batch[index : index + 1]}, (results, index))
        requests.wait_all()
        return [np.concatenate([result[i] for result in results]) for i in outputs]

    return run


def import_openvino():
    """OpenVINO's runtime, without its model converter when that is not loaded yet.

    ``import openvino`` also imports the converter (``openvino.tools.ovc``: its telemetry, its
    TensorFlow front end), which is more than half of the import's CPU time (0.22 of 0.41 s,
    measured) and is needed only to build a cache entry (``_convert`` imports it then). The
    package imports it inside ``try ... except ImportError``, so a ``None`` in ``sys.modules``
    for it, removed right after, leaves it out. Should a release import it unguarded, OpenVINO
    is imported whole.
    """
    if "openvino" in sys.modules:
        import openvino

        return openvino
    converter = "openvino.tools.ovc"
    sys.modules[converter] = None  # type: ignore[assignment]
    try:
        import openvino
    except ImportError:
        for name in [name for name in sys.modules if name.split(".")[0] == "openvino"]:
            del sys.modules[name]
        sys.modules.pop(converter, None)
        import openvino
    finally:
        if converter in sys.modules and sys.modules[converter] is None:
            del sys.modules[converter]
    return openvino


def openvino_ir(model):
    """The Keras model as an OpenVINO model (float32, any batch size), traced by TensorFlow."""
    from openvino.tools.ovc import convert_model

    return convert_model(_tensorflow_function(model))


def _convert(openvino, model, metadata: dict, folder: Path, quantization: dict | None) -> None:
    """Trace, convert (and quantise) and save the IR and metadata into ``folder``, atomically."""
    ir = openvino_ir(model)
    if quantization is not None:
        from shared.quantize import apply_preset

        apply_preset(ir, quantization)
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        openvino.save_model(ir, str(temporary / MODEL_FILE), compress_to_fp16=False)
        (temporary / METADATA_FILE).write_text(json.dumps(metadata), "utf-8")
        os.rename(temporary, folder)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)
        if not (folder / METADATA_FILE).is_file():  # not another process finishing first
            raise
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise


def _build_keras(build: Build) -> tuple[Any, dict]:
    from shared.cli import quiet_tensorflow

    quiet_tensorflow()
    return build()


def _first_words(error: BaseException) -> str:
    """OpenVINO's messages run over several lines of C++ locations; the last line says what."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:200]


def _openvino_model(
    name: str,
    sources: Sequence[Path],
    variant: str,
    build: Build,
    hint: str,
    notify,
    quantization: dict | None,
) -> tuple[InferenceModel | None, str, tuple[Any, dict] | None]:
    """(the OpenVINO model or None, why not, the Keras model if it was built on the way).

    Errors of ``build`` itself (a corrupt weights file) propagate; anything OpenVINO raises
    while converting, saving or compiling means it cannot run the model here.
    """
    try:
        openvino = import_openvino()
    except ImportError as error:
        return None, f"OpenVINO is not installed ({error})", None
    folder = compiled_cache_folder(name, sources, variant, openvino.__version__)
    built = None
    if not (folder / METADATA_FILE).is_file():
        built = _build_keras(build)
        notify(f"note: compiling {name} for OpenVINO once; later runs reuse {folder}")
    try:
        if built is not None:
            _convert(openvino, *built, folder, quantization)
        metadata = json.loads((folder / METADATA_FILE).read_text("utf-8"))
        run = _compile(openvino, folder, hint)
    except Exception as error:  # OpenVINO raises RuntimeError and its own Exception subclasses
        return None, f"OpenVINO cannot run {name} ({_first_words(error)})", built
    return InferenceModel("openvino", metadata, run), "", built


def load_model(
    name: str,
    sources: Sequence[Path | str],
    variant: str,
    build: Build,
    runtime: str | None = None,
    hint: str = "latency",
    notify: Callable[[str], None] = _stderr_line,
    quantization: dict | None = None,
) -> InferenceModel:
    """The model ``build`` makes, ready for inference on ``runtime`` (see the module docstring).

    ``name`` is readable (it names the cache folder); ``sources`` are the files the model is
    built from and ``variant`` anything else that changes it (input size, converter version).
    ``hint`` is how OpenVINO uses the cores (``HINTS``): ``throughput`` for many inputs.
    ``quantization``: a preset (``shared.quantize.read_preset``) to run the model in int8.
    """
    if runtime not in (None, *RUNTIMES):
        raise UserError(f"runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if hint not in HINTS:
        raise ValueError(f"hint must be one of {HINTS}, got {hint!r}")
    sources = [Path(source) for source in sources]
    for source in sources:
        if not source.is_file():
            raise WeightsError(f"{source}: no such file to build {name} from")
    built = None
    if quantization is not None:
        if runtime == "tensorflow":
            raise RuntimeUnavailable(f"{name} in int8 runs on OpenVINO only")
        digest = hashlib.sha256(json.dumps(quantization, sort_keys=True).encode()).hexdigest()
        variant = f"{variant};int8-{digest[:16]}"
    if runtime != "tensorflow":
        model, reason, built = _openvino_model(
            name, sources, variant, build, hint, notify, quantization
        )
        if model is not None:
            return model
        if quantization is not None:
            raise RuntimeUnavailable(f"{reason}; {name} in int8 runs on OpenVINO only")
        if runtime == "openvino":
            raise RuntimeUnavailable(f"{reason}; use --runtime tensorflow")
        notify(f"note: {reason}; running on TensorFlow")
    return tensorflow_model(*(built or _build_keras(build)))
