"""From an RGB image to face vectors: detect, check the face is usable, align, embed.

``FacePipeline`` is what both commands use: ``enrol`` needs exactly one usable face per
image, a door check takes the largest face. Each face is refused with a reason a person can
act on: none found, several found, too small, too blurred.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from apps.face_access.alignment import align_face
from apps.face_access.detection import Face, FaceDetector
from apps.face_access.embedding import FaceEmbedder
from shared.errors import InputError

# The shorter side of the face box, in pixels. Below this the 150x150 chip is mostly
# interpolation. The smallest faces in the AT&T set (subject s2, photographed from further
# away) are 21 to 27 px and still match their owner.
MIN_FACE_SIZE = 20
# Sharpness of the inner face (see ``sharpness``). Unblurred AT&T and Happy House faces
# score at least 13.7 (1st percentile 17.5); the same faces after a 9x9 Gaussian blur score
# 3.4 at the median and 7.3 at the 95th percentile.
MIN_SHARPNESS = 10.0
# Faces are compared at this scale so that sharpness does not depend on resolution.
SHARPNESS_SIDE = 64


def sharpness(rgb: np.ndarray, face: Face) -> float:
    """Contrast-normalised detail of the inner face (eyes to mouth): 100 * var(Laplacian) / var.

    The Laplacian's variance falls when an image is blurred; dividing by the intensity
    variance makes it independent of lighting and contrast, and large faces are first
    shrunk to ``SHARPNESS_SIDE`` so that a high-resolution face is not called blurred
    for having smooth pixels.
    """
    x1, y1, x2, y2 = face.box
    width, height = x2 - x1, y2 - y1
    top, bottom = int(y1 + height / 4), int(y2 - height / 6)
    left, right = int(x1 + width / 6), int(x2 - width / 6)
    region = rgb[max(top, 0) : max(bottom, 0), max(left, 0) : max(right, 0)]
    if region.shape[0] < 3 or region.shape[1] < 3:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(region), cv2.COLOR_RGB2GRAY).astype(np.float32)
    if max(grey.shape) > SHARPNESS_SIDE:
        shrink = SHARPNESS_SIDE / max(grey.shape)
        size = (max(3, round(grey.shape[1] * shrink)), max(3, round(grey.shape[0] * shrink)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return float(100 * cv2.Laplacian(grey, cv2.CV_32F).var() / (grey.var() + 1.0))


def _largest(faces: list[Face]) -> Face:
    return max(faces, key=lambda face: face.size)


@dataclass(frozen=True)
class FaceVector:
    """A detected face and its unit embedding."""

    face: Face
    vector: np.ndarray


class FacePipeline:
    """Detector + aligner + embedder, loaded once and reused for every image."""

    def __init__(
        self,
        detector: FaceDetector | None = None,
        embedder: FaceEmbedder | None = None,
        *,
        min_face_size: float = MIN_FACE_SIZE,
        min_sharpness: float = MIN_SHARPNESS,
    ):
        self.detector = detector or FaceDetector()
        self.embedder = embedder or FaceEmbedder()
        self.min_face_size = min_face_size
        self.min_sharpness = min_sharpness

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def embed_faces(self, rgb: np.ndarray, faces: list[Face]) -> np.ndarray:
        """Unit vectors (len(faces), 128) for faces already found in ``rgb``."""
        chips = [align_face(rgb, face.landmarks) for face in faces]
        return self.embedder.embed(np.stack(chips) if chips else np.zeros((0, 150, 150, 3)))

    def usable_face(self, rgb: np.ndarray, source: str | Path, *, largest: bool = False) -> Face:
        """The one face of ``rgb`` fit to enrol or check, or InputError saying why not.

        Several faces are an error unless ``largest`` (a door camera sees passers-by
        behind the person at the door; an enrolment photo should show one person).
        """
        faces = self.detector.detect(rgb)
        if not faces:
            raise InputError(f"{source}: no face found")
        if len(faces) > 1 and not largest:
            raise InputError(
                f"{source}: {len(faces)} faces found; use one face per image or --largest"
            )
        face = _largest(faces)
        if face.size < self.min_face_size:
            raise InputError(
                f"{source}: face too small ({face.size:.0f} px, at least "
                f"{self.min_face_size:.0f} px needed)"
            )
        score = sharpness(rgb, face)
        if score < self.min_sharpness:
            raise InputError(
                f"{source}: face too blurred (sharpness {score:.1f}, at least "
                f"{self.min_sharpness:.0f} needed)"
            )
        return face

    def face_vector(self, rgb: np.ndarray, source: str | Path, *, largest: bool = False):
        """``usable_face`` and its embedding, as a ``FaceVector``."""
        face = self.usable_face(rgb, source, largest=largest)
        return FaceVector(face, self.embed_faces(rgb, [face])[0])
