"""Face embeddings: an aligned chip in, a unit 128-d vector out, for any ``EmbedderSpec``.

The network is a plain ``keras.Model`` (SFace and MobileFaceNet imported from ONNX, dlib's
ResNet rebuilt from its ``.dat``), run by ``shared.runtime``: compiled by OpenVINO once and
cached, so a later start neither imports the model file nor TensorFlow; TensorFlow where
OpenVINO is missing or refuses it. A spec with a quantisation preset (``sface-int8``) runs in
int8 on OpenVINO only. It is called once per batch through ``embed``. Where the spec
says so (dlib), a face and its mirror image are embedded together and averaged: the two
descriptors differ a little (the network is not exactly symmetric) and their mean is
steadier. The result is L2-normalised, so distances lie in [0, 2] and a threshold does not
depend on how large a descriptor happens to be.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from apps.face_access.models import DEFAULT_MODEL, SPECS, EmbedderSpec, weights_path
from shared.quantize import read_preset
from shared.runtime import load_model
from shared.weights import file_digest

# Part of the compiled model's cache key with the spec's ``model_id``: bump it whenever an
# importer (ONNX, dlib) builds a different graph from the same file.
GRAPH_VERSION = "face-embedder-1"


def quantization_preset(spec: EmbedderSpec, weights: Path) -> dict | None:
    """The spec's int8 preset (shipped in ``convnet_apps_data``), checked against ``weights``."""
    if spec.quantization is None:
        return None
    from importlib import resources

    text = resources.files("convnet_apps_data").joinpath("quantization", spec.quantization)
    return read_preset(text.read_text("utf-8"), file_digest(weights), spec.quantization)


class FaceEmbedder:
    """Chips (N, size, size, 3) RGB uint8 -> unit vectors (N, 128) float32."""

    def __init__(
        self,
        spec: EmbedderSpec | str = DEFAULT_MODEL,
        weights: str | Path | None = None,
        batch_size: int = 32,
        runtime: str | None = None,
    ):
        """``runtime``: ``openvino`` or ``tensorflow`` (None: OpenVINO where it works)."""
        self.spec = SPECS[spec] if isinstance(spec, str) else spec
        self.batch_size = batch_size
        path = weights_path(self.spec, weights and Path(weights))

        def build():
            network = self.spec.build(path)
            return network, {"dimensions": int(network.output_shape[-1])}

        variant = f"{GRAPH_VERSION};{self.spec.model_id}"
        preset = quantization_preset(self.spec, path)
        # Named as users name the model (``sface-int8``; a file's stem for a model given by
        # path): the cache folder and the runtime's messages carry it.
        name = Path(self.spec.name).stem
        self.model = load_model(name, [path], variant, build, runtime, quantization=preset)

    @property
    def model_id(self) -> str:
        return self.spec.model_id

    @property
    def dimensions(self) -> int:
        """Length of an embedding."""
        return self.model.metadata["dimensions"]

    def embed(self, chips: np.ndarray, *, mirror: bool | None = None) -> np.ndarray:
        """Unit vectors of ``chips``; ``mirror`` overrides the spec's choice (for studies)."""
        mirror = self.spec.mirror if mirror is None else mirror
        chips = np.asarray(chips)
        if len(chips) == 0:
            return np.zeros((0, self.dimensions), np.float32)
        out = []
        for start in range(0, len(chips), self.batch_size):
            batch = self.spec.network_input(chips[start : start + self.batch_size])
            both = np.concatenate([batch, batch[:, :, ::-1]]) if mirror else batch
            (descriptors,) = self.model(both)
            if mirror:
                descriptors = (descriptors[: len(batch)] + descriptors[len(batch) :]) / 2
            out.append(descriptors)
        vectors = np.concatenate(out)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
