"""YuNet on real faces (tight crops included), the Haar fallback, and coordinates in big images."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

import shared.weights
from apps.face_access.detection import FaceDetector
from shared.errors import WeightsError
from shared.images import read_image

SAMPLES = [
    "att_faces/s1/1.pgm",
    "att_faces/s2/7.pgm",  # a wide shot: the face is about 23 px
    "glint360k_celebrity_subset/Barack Obama/0.png",
    "happy_house/images/camera_0.jpg",
]


@pytest.fixture(scope="module")
def yunet(yunet_onnx):
    return FaceDetector(yunet_onnx)


def _check_face(face, width, height):
    x1, y1, x2, y2 = face.box
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    left_eye, right_eye, nose, mouth_left, mouth_right = face.landmarks
    # Image-left eye left of the image-right eye, eyes above the nose above the mouth.
    assert left_eye[0] < nose[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < nose[1] < min(mouth_left[1], mouth_right[1])


@pytest.mark.parametrize("sample", SAMPLES)
def test_yunet_finds_the_one_face_of_a_tight_crop(yunet, data_dir, sample):
    rgb = read_image(data_dir / "faces" / sample)
    faces = yunet.detect(rgb)
    assert len(faces) == 1 and faces[0].score > 0.6
    _check_face(faces[0], rgb.shape[1], rgb.shape[0])


def test_no_face_in_a_plain_image(yunet):
    gradient = np.tile(np.linspace(0, 255, 200, dtype=np.uint8)[None, :, None], (150, 1, 3))
    assert yunet.detect(gradient) == []


def test_large_images_are_shrunk_for_detection_but_answered_in_original_pixels(yunet, data_dir):
    rgb = read_image(data_dir / "faces" / "happy_house" / "images" / "camera_0.jpg")
    canvas = np.full((960, 1280, 3), 90, np.uint8)
    face_at = (300, 500)  # (row, col) of the pasted photo, scaled 4x to 384x384
    canvas[300:684, 500:884] = cv2.resize(rgb, (384, 384), interpolation=cv2.INTER_CUBIC)
    (big,) = yunet.detect(canvas)
    (small,) = yunet.detect(rgb)
    expected = small.landmarks * 4 + [face_at[1], face_at[0]]
    # The detector sees the two faces at different scales, so their landmarks differ a little
    # (up to ~6 % of the face here); a wrong scale or border offset would be off by 100s of px.
    assert np.abs(big.landmarks - expected).max() < 0.08 * big.size
    assert 3.5 < big.size / small.size < 4.5


def test_openvino_yunet_finds_what_opencv_finds(yunet_onnx, data_dir):
    """The default YuNet (OpenVINO, our decoding) against OpenCV's FaceDetectorYN, face by face,
    on the samples, two faces side by side, a plain image and a 640x480 street frame."""
    pytest.importorskip("openvino")
    ours, theirs = FaceDetector(yunet_onnx), FaceDetector(yunet_onnx, runtime="tensorflow")
    assert type(ours._yunet).__name__ == "OpenVinoYuNet"
    assert isinstance(theirs._yunet, cv2.FaceDetectorYN)
    faces = data_dir / "faces"
    street = read_image(data_dir / "cars" / "driveai" / "images" / "0001.jpg")
    samples = [read_image(faces / sample) for sample in SAMPLES]
    two_faces = np.concatenate([samples[3], samples[3][:, ::-1]], axis=1)
    plain = np.full((120, 90, 3), 128, np.uint8)
    images = [*samples, two_faces, plain, cv2.resize(street, (640, 480))]
    counts = []
    for rgb in images:
        found, expected = ours.detect(rgb), theirs.detect(rgb)
        counts.append(len(expected))
        assert len(found) == len(expected)
        for face, reference in zip(found, expected, strict=True):
            np.testing.assert_allclose(face.box, reference.box, atol=1e-3)
            np.testing.assert_allclose(face.landmarks, reference.landmarks, atol=1e-3)
            assert abs(face.score - reference.score) < 1e-4
    assert counts[:4] == [1, 1, 1, 1] and counts[4] == 2 and counts[5] == 0


def test_openvino_yunet_clears_what_a_larger_image_left_on_a_shared_canvas(yunet_onnx, data_dir):
    """Images of nearby sizes share one compiled canvas; the margins the smaller one leaves must
    hold zeros again, not the pixels of the image before it."""
    pytest.importorskip("openvino")
    street = cv2.resize(
        read_image(data_dir / "cars" / "driveai" / "images" / "0001.jpg"), (640, 480)
    )
    face = read_image(data_dir / "faces" / "happy_house" / "images" / "camera_0.jpg")
    street[100:324, 200:424] = cv2.resize(face, (224, 224), interpolation=cv2.INTER_CUBIC)
    larger, smaller = street, street[:460, :620]  # shrunk to 320x240 and 320x237: one canvas
    used, fresh = FaceDetector(yunet_onnx), FaceDetector(yunet_onnx)
    used.detect(larger)
    (after,), (alone,) = used.detect(smaller), fresh.detect(smaller)
    np.testing.assert_array_equal(after.landmarks, alone.landmarks)
    assert after.score == alone.score


def test_explicit_missing_model_is_an_error(tmp_path):
    with pytest.raises(WeightsError):
        FaceDetector(tmp_path / "absent.onnx")


def test_haar_fallback_with_one_warning(monkeypatch, caplog, data_dir):
    def unavailable(model, filename, explicit=None):
        raise WeightsError(f"{filename}: not found")

    monkeypatch.setattr(shared.weights, "resolve_file", unavailable)
    with caplog.at_level(logging.WARNING):
        detector = FaceDetector()
    assert detector.name == "haar"
    (record,) = caplog.records
    assert "Haar" in record.getMessage() and "\n" not in record.getMessage()
    rgb = read_image(data_dir / "faces" / "att_faces" / "s1" / "1.pgm")
    (face,) = detector.detect(rgb)
    _check_face(face, rgb.shape[1], rgb.shape[0])
