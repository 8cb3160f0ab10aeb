"""The detector's network, ready for inference: a Darknet model run by ``shared.runtime``.

``load_network(cfg, weights, size, runtime)`` gives a ``DetectorNetwork``: OpenVINO by default,
compiled once from the Keras import and cached, so later runs neither convert the Darknet files
nor import TensorFlow; TensorFlow where OpenVINO is missing or refuses the model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.runtime import InferenceModel, load_model

# Part of the compiled model's cache key: bump it whenever ``darknet.py`` builds a different
# graph from the same files, so stale compiled models are not reused.
GRAPH_VERSION = "darknet-pixels-1"


@dataclass
class DetectorNetwork:
    """A network at a fixed input size: uint8 frames (B, height, width, 3) in, head rows out.

    ``predict_heads`` returns one (B, rows, 5 + classes) array per head, as
    ``darknet.DarknetModel.predict_heads`` does on TensorFlow.
    """

    width: int
    height: int
    classes: int
    model: InferenceModel

    @property
    def runtime(self) -> str:
        return self.model.runtime

    def predict_heads(self, images: np.ndarray) -> list[np.ndarray]:
        return self.model(np.ascontiguousarray(images, dtype=np.uint8))


def load_network(
    cfg: Path, weights: Path, size: int | None = None, runtime: str | None = None
) -> DetectorNetwork:
    """The Darknet model of ``cfg`` + ``weights`` at ``size`` (None: the cfg's), on ``runtime``
    (None: OpenVINO where it works)."""

    def build():
        from apps.car_detection.darknet import load_darknet

        darknet = load_darknet(cfg, weights, input_size=(size, size) if size else None)
        facts = {"width": darknet.width, "height": darknet.height, "classes": darknet.classes}
        return darknet.pixel_model(), facts

    name = f"{Path(cfg).stem}-{size or 'cfg'}"
    variant = f"{GRAPH_VERSION};size={size or 'cfg'}"
    model = load_model(name, [cfg, weights], variant, build, runtime, hint="throughput")
    return DetectorNetwork(model=model, **model.metadata)
