"""Similarity transforms and chips: hand-made cases, a least-squares oracle, and dlib's chips."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from apps.face_access.alignment import (
    ARCFACE_CHIP_SIZE,
    ARCFACE_TEMPLATE,
    DLIB_CHIP_TEMPLATE,
    YUNET_CHIP_TEMPLATE,
    align_face,
    already_aligned,
    fit_template,
    similarity_transform,
)
from apps.face_access.detection import FaceDetector
from apps.face_access.models import SFACE
from shared.images import read_image


def _apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def _rotation_scale(angle: float, scale: float, shift) -> np.ndarray:
    c, s = scale * np.cos(angle), scale * np.sin(angle)
    return np.array([[c, -s, shift[0]], [s, c, shift[1]]])


def test_exact_similarity_is_recovered():
    truth = _rotation_scale(0.3, 1.7, (12.0, -4.5))
    source = np.array([[0, 0], [10, 0], [0, 10], [7, 3], [2, 9]], float)
    np.testing.assert_allclose(
        similarity_transform(source, _apply(truth, source)), truth, atol=1e-12
    )


def test_noisy_fit_matches_a_linear_least_squares_oracle():
    rng = np.random.default_rng(1)
    source = rng.uniform(0, 100, (5, 2))
    target = _apply(_rotation_scale(-0.2, 0.6, (30, 40)), source) + rng.normal(0, 2, (5, 2))
    # Unknowns (a, b, tx, ty) of x' = a x - b y + tx, y' = b x + a y + ty, solved by lstsq.
    rows = []
    for x, y in source:
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
    (a, b, tx, ty), *_ = np.linalg.lstsq(np.array(rows), target.ravel(), rcond=None)
    np.testing.assert_allclose(
        similarity_transform(source, target), [[a, -b, tx], [b, a, ty]], atol=1e-9
    )


def test_degenerate_points_are_refused():
    with pytest.raises(ValueError, match="coincide"):
        similarity_transform(np.ones((5, 2)), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="point sets"):
        similarity_transform(np.ones((5, 2)), np.zeros((4, 2)))


def test_fit_template_inverts_each_faces_reference_transform():
    rng = np.random.default_rng(2)
    detected_template = YUNET_CHIP_TEMPLATE
    detected, reference = [], []
    for _ in range(4):
        to_image = _rotation_scale(
            rng.uniform(-0.4, 0.4), rng.uniform(0.3, 2), rng.uniform(0, 90, 2)
        )
        detected.append(_apply(to_image, detected_template))
        reference.append(_apply(to_image, DLIB_CHIP_TEMPLATE))
    fitted = fit_template(np.array(detected), np.array(reference), DLIB_CHIP_TEMPLATE)
    np.testing.assert_allclose(fitted, detected_template, atol=1e-9)


def test_identity_fit_samples_half_a_pixel_off_as_dlib_does():
    """With the template's own points as landmarks the fit is the identity, but dlib centres
    its 149-pixel-wide sampling rectangle on the image of the chip point (75, 75), so chip
    pixel (x, y) reads the image at (x + 0.5, y + 0.5): the mean of a 2x2 block, truncated."""
    rng = np.random.default_rng(3)
    image = rng.integers(0, 256, (200, 220, 3), dtype=np.uint8)
    block_means = (
        image[:-1, :-1].astype(int) + image[1:, :-1] + image[:-1, 1:] + image[1:, 1:]
    ) // 4
    chip = align_face(image, DLIB_CHIP_TEMPLATE, DLIB_CHIP_TEMPLATE)
    np.testing.assert_array_equal(chip, block_means[:150, :150])
    shifted = align_face(image, DLIB_CHIP_TEMPLATE + np.array([20, 10]), DLIB_CHIP_TEMPLATE)
    np.testing.assert_array_equal(shifted, block_means[10:160, 20:170])


def test_chips_match_dlibs_own_chips(reference_dir, data_dir):
    """dlib's landmarks of the 60 oracle faces, cut with dlib's template, give dlib's chips
    up to interpolation rounding (OpenCV samples at 1/32 pixel)."""
    oracle = reference_dir / "dlib_oracle"
    chips = np.load(oracle / "chips.npz")["chips"]
    landmarks = np.load(oracle / "landmarks.npy")
    with open(oracle / "index.csv", newline="") as table:
        sources = [row["source"] for row in csv.DictReader(table)]
    diffs = [
        np.abs(align_face(read_image(data_dir / "faces" / source), points, DLIB_CHIP_TEMPLATE)
               .astype(int) - chip).mean()
        for source, points, chip in zip(sources, landmarks, chips, strict=True)
    ]  # fmt: skip
    assert max(diffs) < 1.6 and np.mean(diffs) < 0.8


def test_only_a_chip_sized_image_with_the_face_on_the_template_counts_as_aligned():
    chip = np.zeros((ARCFACE_CHIP_SIZE, ARCFACE_CHIP_SIZE, 3), np.uint8)
    near = ARCFACE_TEMPLATE + np.array([6.0, -5.0])
    assert already_aligned(chip, near, ARCFACE_TEMPLATE, ARCFACE_CHIP_SIZE)
    assert not already_aligned(chip, ARCFACE_TEMPLATE + 20, ARCFACE_TEMPLATE, ARCFACE_CHIP_SIZE)
    taller = np.zeros((ARCFACE_CHIP_SIZE + 8, ARCFACE_CHIP_SIZE, 3), np.uint8)
    assert not already_aligned(taller, near, ARCFACE_TEMPLATE, ARCFACE_CHIP_SIZE)


def test_a_chip_given_as_a_photo_is_embedded_as_it_is(yunet_onnx, data_dir):
    """A face set of aligned chips (glint's photos are ArcFace chips): YuNet finds the face on
    the chip again, near the template but not on it, and the chip is not warped a second time;
    a chip-sized image whose face sits elsewhere is aligned as any photo."""
    detector = FaceDetector(yunet_onnx)

    def largest_face(image):
        return max(detector.detect(image), key=lambda face: face.size)

    photo = read_image(data_dir / "faces/lfw_deepfunneled/Ai_Sugiyama/Ai_Sugiyama_0001.jpg")
    chip = SFACE.chip(photo, largest_face(photo).landmarks)
    again = largest_face(chip).landmarks
    assert 0 < np.abs(again - ARCFACE_TEMPLATE).max() <= 0.1 * ARCFACE_CHIP_SIZE
    assert SFACE.chip(chip, again) is chip
    moved = np.roll(chip, 30, axis=1)
    realigned = SFACE.chip(moved, largest_face(moved).landmarks)
    inner_face = (slice(40, 100), slice(30, 82))  # away from the edges the roll blacked out
    assert realigned is not moved
    assert np.abs(realigned[inner_face].astype(int) - chip[inner_face]).mean() < 20
