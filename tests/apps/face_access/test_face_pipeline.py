"""The whole image -> vector path on real faces, and the reasons a face is refused."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from apps.face_access.alignment import align_face
from apps.face_access.models import DLIB
from apps.face_access.pipeline import MIN_SHARPNESS, FacePipeline, sharpness
from shared.errors import InputError
from shared.images import read_image


@pytest.fixture(scope="module")
def att(request):
    root = request.getfixturevalue("data_dir") / "faces" / "att_faces"
    return lambda person, number: read_image(root / person / f"{number}.pgm")


def test_same_person_is_nearer_than_another(pipeline, att):
    images = [att("s1", 1), att("s1", 4), att("s5", 1), att("s5", 4)]
    vectors = np.stack([pipeline.face_vector(image, "x").vector for image in images])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    d = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    assert d[0, 1] < 0.31 and d[2, 3] < 0.31  # the default threshold
    assert min(d[0, 2], d[0, 3], d[1, 2], d[1, 3]) > 0.4


def test_flip_averaging_makes_the_vector_mirror_symmetric(pipeline, att):
    rgb = att("s3", 2)
    face = pipeline.usable_face(rgb, "x")
    chip = align_face(rgb, face.landmarks)
    both = pipeline.embedder.embed(np.stack([chip, chip[:, ::-1]]))
    np.testing.assert_allclose(both[0], both[1], atol=1e-6)


def test_no_faces_give_no_vectors(pipeline):
    assert pipeline.embedder.embed(np.zeros((0, 150, 150, 3), np.uint8)).shape == (0, 128)


def test_refusals_name_the_image_and_the_reason(pipeline, att):
    blank = np.full((120, 100, 3), 128, np.uint8)
    with pytest.raises(InputError, match=r"^blank\.png: no face found$"):
        pipeline.usable_face(blank, "blank.png")

    pair = np.concatenate([att("s1", 1), att("s5", 1)], axis=1)
    with pytest.raises(InputError, match="2 faces found"):
        pipeline.usable_face(pair, "pair.png")
    assert pipeline.usable_face(pair, "pair.png", largest=True).size > 40

    blurred = cv2.GaussianBlur(att("s1", 1), (15, 15), 0)
    with pytest.raises(InputError, match="too blurred"):
        pipeline.usable_face(blurred, "blurred.png")

    strict = FacePipeline(pipeline.detector, pipeline.embedder, min_face_size=80)
    with pytest.raises(InputError, match=r"face too small \(\d+ px, at least 80 px needed\)"):
        strict.usable_face(att("s1", 1), "small.png")


def test_sharpness_falls_with_blur(pipeline, att):
    rgb = att("s7", 3)
    face = pipeline.usable_face(rgb, "x")
    sharp = sharpness(align_face(rgb, face.landmarks), DLIB.sharpness_region)
    softer = [
        sharpness(
            align_face(cv2.GaussianBlur(rgb, (k, k), 0), face.landmarks), DLIB.sharpness_region
        )
        for k in (3, 7, 11)
    ]
    assert sharp > softer[0] > softer[1] > softer[2]


@pytest.mark.parametrize("person, number", [("s7", 3), ("s2", 6), ("s30", 5)])
def test_sharpness_does_not_depend_on_resolution(pipeline, att, person, number):
    """An enlarged face (as a 112x112 crop enlarged from a small one) is as sharp as itself.

    A gate on the image's own pixels rejected such faces for their smooth pixels; on the
    aligned chip the score of a face enlarged 3x stays near the original's and above the
    gate, and the face still matches its original.
    """
    rgb = att(person, number)
    enlarged = cv2.resize(rgb, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    original = pipeline.face_vector(rgb, "original")
    bigger = pipeline.face_vector(enlarged, "enlarged")  # would raise if called blurred
    score = sharpness(align_face(rgb, original.face.landmarks), DLIB.sharpness_region)
    score_enlarged = sharpness(align_face(enlarged, bigger.face.landmarks), DLIB.sharpness_region)
    assert min(score, score_enlarged) >= MIN_SHARPNESS
    assert 0.6 < score_enlarged / score < 1.8
    assert np.linalg.norm(original.vector - bigger.vector) < DLIB.threshold
