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

from apps.face_access.detection import Face, FaceDetector
from apps.face_access.embedding import FaceEmbedder
from apps.face_access.models import EmbedderSpec
from shared.errors import InputError

# The shorter side of the face box, in pixels. Below this the 150x150 chip is mostly
# interpolation. The smallest faces in the AT&T set (subject s2, photographed from further
# away) are 21 to 27 px and still match their owner.
MIN_FACE_SIZE = 20
# Sharpness of the aligned chip's inner face (see ``sharpness``), measured on AT&T (all 400
# faces): unblurred faces score at least 11.5 (1st percentile), the same faces upscaled 2x
# at least 20.5 and at half resolution 6.9; blurred by a Gaussian of 4 % of the face
# size (where 86 % of them no longer match their owner under the threshold) the median is
# 3.9 and 86 % fall below this gate. The Happy House photos score 7.3 to 102.
MIN_SHARPNESS = 6.0
# The width the chip's inner face (``EmbedderSpec.sharpness_region``) is shrunk to before
# measuring, so that every chip size is judged at the same fraction of the face.
SHARPNESS_SIDE = 32


def sharpness(chip: np.ndarray, region: tuple[slice, slice]) -> float:
    """Contrast-normalised detail of an aligned chip's inner face: 100 * var(Laplacian) / var.

    The Laplacian's variance falls when a face is blurred; dividing by the intensity
    variance makes it independent of lighting and contrast. It is measured on the chip,
    where every face has the same size, shrunk to ``SHARPNESS_SIDE`` pixels across: so the
    question is whether the face has detail at a fixed fraction of its own size, whatever
    the image's resolution. Measured on the image instead, an upscaled face (a tight crop
    enlarged to 112x112, a photo from a low-resolution camera) reads as blurred for its
    smooth pixels although it matches as well as the original, and a gate on it rejected
    sharp faces.
    """
    region = np.ascontiguousarray(chip[region])
    grey = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY).astype(np.float32)
    height = round(SHARPNESS_SIDE * grey.shape[0] / grey.shape[1])
    grey = cv2.resize(grey, (SHARPNESS_SIDE, height), interpolation=cv2.INTER_AREA)
    return float(100 * cv2.Laplacian(grey, cv2.CV_32F).var() / (grey.var() + 1.0))


def _largest(faces: list[Face]) -> Face:
    return max(faces, key=lambda face: face.size)


def _most_central(faces: list[Face], rgb: np.ndarray) -> Face:
    """The face whose box centre is nearest the image centre (LFW's rule for its label)."""
    centre = np.array([rgb.shape[1], rgb.shape[0]]) / 2
    return min(faces, key=lambda face: np.hypot(*((face.box[:2] + face.box[2:]) / 2 - centre)))


@dataclass(frozen=True)
class FaceVector:
    """A detected face and its unit embedding; ``faces_found`` > 1 when it was the largest."""

    face: Face
    vector: np.ndarray
    faces_found: int = 1


class FacePipeline:
    """Detector + aligner + embedder, loaded once and reused for every image."""

    def __init__(
        self,
        detector: FaceDetector | None = None,
        embedder: FaceEmbedder | None = None,
        *,
        chips_of: EmbedderSpec | None = None,
        min_face_size: float = MIN_FACE_SIZE,
        min_sharpness: float = MIN_SHARPNESS,
    ):
        """``chips_of``: cut this model's chips and load no embedder (``face_vector`` is then
        unavailable): what preparing training or door chips needs."""
        self.detector = detector or FaceDetector()
        self.embedder = None if chips_of is not None else embedder or FaceEmbedder()
        self.spec = chips_of or self.embedder.spec
        self.min_face_size = min_face_size
        self.min_sharpness = min_sharpness

    @property
    def model_id(self) -> str:
        return self.embedder.model_id

    def usable_face(self, rgb: np.ndarray, source: str | Path, *, largest: bool = False) -> Face:
        """The one face of ``rgb`` fit to enrol or check, or InputError saying why not.

        Several faces are an error unless ``largest`` (a door camera sees passers-by
        behind the person at the door; an enrolment photo should show one person).
        """
        return self.usable_chip(rgb, source, largest=largest)[0]

    def usable_chip(
        self, rgb: np.ndarray, source: str | Path, *, largest: bool = False, central: bool = False
    ) -> tuple[Face, np.ndarray, int]:
        """``usable_face``, its aligned chip (on which sharpness is judged) and the face count;
        enrolment embeds a person's chips in one batch.

        ``central`` takes the face nearest the image centre when there are several (how
        LFW's photos mark the labelled person); ``largest`` the largest.
        """
        faces = self.detector.detect(rgb)
        if not faces:
            raise InputError(f"{source}: no face found")
        if len(faces) > 1 and not (largest or central):
            raise InputError(
                f"{source}: {len(faces)} faces found; use one face per image or --largest"
            )
        face = _most_central(faces, rgb) if central else _largest(faces)
        if face.size < self.min_face_size:
            raise InputError(
                f"{source}: face too small ({face.size:.0f} px, at least "
                f"{self.min_face_size:.0f} px needed)"
            )
        chip = self.spec.chip(rgb, face.landmarks)
        score = sharpness(chip, self.spec.sharpness_region)
        if score < self.min_sharpness:
            raise InputError(
                f"{source}: face too blurred (sharpness {score:.1f}, at least "
                f"{self.min_sharpness:g} needed)"
            )
        return face, chip, len(faces)

    def face_vector(self, rgb: np.ndarray, source: str | Path, *, largest: bool = False):
        """``usable_face`` and its embedding, as a ``FaceVector``."""
        face, chip, found = self.usable_chip(rgb, source, largest=largest)
        return FaceVector(face, self.embedder.embed(chip[None])[0], found)
