"""Face embeddings: dlib's face ResNet on aligned 150x150 chips, averaged with the mirror image.

A face and its mirror image are the same person, and the network's two descriptors differ a
little (it is not exactly symmetric); their mean is a steadier descriptor than either.
The result is L2-normalised, so distances lie in [0, 2] and a threshold does not depend on
how large a descriptor happens to be (see ``DEFAULT_THRESHOLD`` in the decision module).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shared.backbones.dlib_resnet import dlib_face_resnet, preprocess_input

# Stored with every embedding: vectors from a different model or pipeline are never
# compared with this one's. Change it whenever the vectors would change.
MODEL_ID = "dlib-resnet-v1/yunet-5pt/flip-mean/l2"


class FaceEmbedder:
    """Chips (N, 150, 150, 3) RGB uint8 -> unit 128-d vectors (N, 128) float32."""

    model_id = MODEL_ID

    def __init__(self, weights: str | Path = "dlib", batch_size: int = 32):
        self.batch_size = batch_size
        # The inference form with dlib's affine layers folded into the convolutions: the same
        # descriptors (oracle test), 10 to 15 % faster (11-12.7 ms vs 13-14.3 for a chip and its
        # mirror on one thread).
        self._model = dlib_face_resnet(weights, folded=True)

    def embed(self, chips: np.ndarray, *, mirror: bool = True) -> np.ndarray:
        """Unit vectors of ``chips``; ``mirror=False`` skips the mirror image (half the time,
        and on AT&T about one point of true-accept rate less: see the README)."""
        chips = np.asarray(chips)
        if len(chips) == 0:
            return np.zeros((0, 128), np.float32)
        out = []
        for start in range(0, len(chips), self.batch_size):
            batch = preprocess_input(chips[start : start + self.batch_size])
            both = np.concatenate([batch, batch[:, :, ::-1]]) if mirror else batch
            # predict_on_batch runs a compiled graph: eager calls of this 150-layer network
            # cost ~10x more per image (measured 135 ms vs 14 ms for a chip and its mirror).
            descriptors = np.asarray(self._model.predict_on_batch(both))
            out.append((descriptors[: len(batch)] + descriptors[-len(batch) :]) / 2)
        vectors = np.concatenate(out)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
