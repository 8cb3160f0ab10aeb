"""Find faces, embed them, compare them: the door's models in a few short functions.

For Python users who want faces without the door (after ageitgey/face_recognition)::

    from apps.face_access import api

    known = api.face_encodings(api.load_image_file("alice.jpg"))[0]
    visitor = api.load_image_file("visitor.jpg")  # RGB uint8, height x width x 3
    for box, encoding in zip(api.face_locations(visitor), api.face_encodings(visitor)):
        print(box, api.compare_faces([known], encoding))  # (x1, y1, x2, y2) [True]

Images are RGB ``uint8`` NumPy arrays (``load_image_file`` reads any photo so). The models
(the door's detector and default embedder) load on the first call and are reused; an
encoding is a unit vector, and two encodings of one person lie closer than the door's
threshold for that embedder, which is ``compare_faces``'s default tolerance. Unlike the
door, these functions judge no face unusable (small or blurred faces are encoded too).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from shared.images import read_image

if TYPE_CHECKING:  # the pipeline loads TensorFlow: only when a face is first looked for
    from apps.face_access.detection import Face
    from apps.face_access.pipeline import FacePipeline


@functools.cache
def default_pipeline() -> FacePipeline:
    """The door's detector and default embedder, loaded once (weights found by the resolver)."""
    from apps.face_access.pipeline import FacePipeline

    return FacePipeline()


def load_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Any photo (JPEG, PNG, grey, 16-bit, EXIF-rotated) as an RGB uint8 array."""
    return read_image(path)


def _checked(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an RGB uint8 image of shape (height, width, 3), got {image.dtype} "
            f"{image.shape}; load_image_file reads a photo so"
        )
    return image


def _faces(image: np.ndarray) -> list[Face]:
    """Detected faces, largest first (the order every function here returns)."""
    faces = default_pipeline().detector.detect(_checked(image))
    return sorted(faces, key=lambda face: face.size, reverse=True)


def face_locations(image: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes ``(x1, y1, x2, y2)`` in the image's pixels of every face found, largest first."""
    return [tuple(round(float(v)) for v in face.box) for face in _faces(image)]


def face_encodings(image: np.ndarray) -> list[np.ndarray]:
    """One unit vector per face found, in the order of ``face_locations``."""
    image = _checked(image)
    pipeline = default_pipeline()
    spec = pipeline.embedder.spec
    chips = [spec.chip(image, face.landmarks) for face in _faces(image)]
    if not chips:
        return []
    return list(pipeline.embedder.embed(np.stack(chips)))


def face_distance(known_encodings: Sequence[np.ndarray], candidate: np.ndarray) -> np.ndarray:
    """Euclidean distance from ``candidate`` to each known encoding (0 same, up to 2)."""
    known = np.asarray(known_encodings, np.float32).reshape(len(known_encodings), -1)
    return np.linalg.norm(known - np.asarray(candidate, np.float32), axis=1)


def default_tolerance() -> float:
    """The largest distance the door grants with the default embedder (its spec's threshold)."""
    return default_pipeline().embedder.spec.threshold


def compare_faces(
    known_encodings: Sequence[np.ndarray], candidate: np.ndarray, tolerance: float | None = None
) -> list[bool]:
    """For each known encoding, whether ``candidate`` is the same person: nearer than
    ``tolerance`` (default: the door's threshold for the default embedder)."""
    limit = default_tolerance() if tolerance is None else tolerance
    return [bool(distance < limit) for distance in face_distance(known_encodings, candidate)]
