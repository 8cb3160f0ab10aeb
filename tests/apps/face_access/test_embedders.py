"""The ArcFace-chip embedders in Keras against OpenCV on real aligned faces, and ``--model``
resolution."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from apps.face_access.alignment import warp_face
from apps.face_access.embedding import FaceEmbedder
from apps.face_access.models import (
    DLIB,
    MOBILEFACENET,
    SFACE,
    SPECS,
    move_hint,
    resolve_model,
    spec_for_model_id,
)
from shared.errors import InputError
from shared.images import read_image
from shared.runtime import RuntimeUnavailable

# Four LFW development photos (two people, one with a second face in the picture).
PHOTOS = (
    "Ana_Palacio/Ana_Palacio_0001.jpg",
    "Ana_Palacio/Ana_Palacio_0005.jpg",
    "Colin_Powell/Colin_Powell_0001.jpg",
    "Colin_Powell/Colin_Powell_0018.jpg",
)


@pytest.fixture(scope="module")
def faces(data_dir, pipeline):
    """(BGR image, YuNet row for OpenCV, aligned RGB chip) of each photo's centre face."""
    root = data_dir / "faces" / "lfw_deepfunneled"
    found = []
    for name in PHOTOS:
        rgb = read_image(root / name)
        face = min(
            pipeline.detector.detect(rgb),
            key=lambda f: np.hypot(*((f.box[:2] + f.box[2:]) / 2 - 125)),
        )
        row = np.concatenate(
            [face.box[:2], face.box[2:] - face.box[:2], face.landmarks.ravel(), [face.score]]
        ).astype(np.float32)
        found.append((cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), row, warp_face(rgb, face.landmarks)))
    return found


def test_arcface_chip_equals_opencv_align_crop(faces, sface_onnx):
    recognizer = cv2.FaceRecognizerSF.create(str(sface_onnx), "")
    for bgr, row, chip in faces:
        difference = np.abs(recognizer.alignCrop(bgr, row).astype(int) - chip[..., ::-1])
        # Rounding of the fitted transform: a grey level or two at a few pixels.
        assert difference.max() <= 2 and difference.mean() < 0.01


def _unit(vectors):
    vectors = np.asarray(vectors, np.float64).reshape(len(vectors), -1)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def test_sface_in_keras_equals_opencv_face_recognizer(faces, sface_onnx):
    recognizer = cv2.FaceRecognizerSF.create(str(sface_onnx), "")
    chips = np.stack([chip for _, _, chip in faces])
    theirs = _unit([recognizer.feature(cv2.cvtColor(c, cv2.COLOR_RGB2BGR)) for c in chips])
    ours = FaceEmbedder(SFACE, sface_onnx).embed(chips)
    assert np.abs(ours - theirs).max() < 1e-4
    # Not a degenerate agreement: the two people are far apart, each person's photos near.
    distances = np.linalg.norm(ours[:, None] - ours[None], axis=2)
    assert max(distances[0, 1], distances[2, 3]) < 0.95 < distances[:2, 2:].min()


def test_openvino_embeddings_equal_the_keras_models(faces, sface_onnx):
    """The default runtime (OpenVINO, compiled from the Keras model) against TensorFlow."""
    chips = np.stack([chip for _, _, chip in faces])
    compiled = FaceEmbedder(SFACE, sface_onnx, runtime="openvino")
    keras_run = FaceEmbedder(SFACE, sface_onnx, runtime="tensorflow")
    assert (compiled.model.runtime, keras_run.model.runtime) == ("openvino", "tensorflow")
    ours, theirs = compiled.embed(chips), keras_run.embed(chips)
    assert ours.shape == (4, 128) and np.abs(ours - theirs).max() < 1e-4
    assert np.abs(ours[0] - ours[2]).max() > 0.05  # different people, different vectors


def test_mobilefacenet_in_keras_equals_opencv_dnn(faces, mobilefacenet_onnx):
    net = cv2.dnn.readNet(str(mobilefacenet_onnx))
    chips = np.stack([chip for _, _, chip in faces])
    theirs = []
    for chip in chips:
        # foamliu's transform: RGB / 255, ImageNet mean and std, NCHW.
        x = (chip / 255.0 - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
        net.setInput(x.transpose(2, 0, 1)[None].astype(np.float32))
        theirs.append(net.forward())
    ours = FaceEmbedder(MOBILEFACENET, mobilefacenet_onnx).embed(chips)
    assert np.abs(ours - _unit(theirs)).max() < 1e-4


@pytest.mark.parametrize("name", ["sface-int8", "mobilefacenet-int8"])
def test_int8_embedders_stay_near_the_float_ones_and_keep_people_apart(faces, name, request):
    """The shipped presets fit the catalogued files, and the int8 vectors are the float model's
    to within quantisation: 0.062 (SFace) and 0.085 (MobileFaceNet) apart at the median on LFW
    development chips; 0.3 at most here."""
    int8_spec = SPECS[name]
    float_spec = SPECS[name.removesuffix("-int8")]
    others = {spec.model_id for spec in SPECS.values() if spec is not int8_spec}
    assert int8_spec.model_id not in others
    weights = request.getfixturevalue(f"{float_spec.name}_onnx")
    chips = np.stack([chip for _, _, chip in faces])
    int8 = FaceEmbedder(int8_spec, weights, runtime="openvino")
    ours, theirs = int8.embed(chips), FaceEmbedder(float_spec, weights).embed(chips)
    apart = np.linalg.norm(ours - theirs, axis=1)
    assert int8.model.runtime == "openvino" and (apart > 0.01).all() and (apart < 0.3).all()
    distances = np.linalg.norm(ours[:, None] - ours[None], axis=2)
    assert max(distances[0, 1], distances[2, 3]) < distances[:2, 2:].min()
    with pytest.raises(InputError, match=f"enrolled with {float_spec.name}, not {name}"):
        resolve_model(name, [float_spec.model_id])
    with pytest.raises(RuntimeUnavailable, match=f"{name} in int8 runs on OpenVINO only"):
        FaceEmbedder(int8_spec, weights, runtime="tensorflow")
    # A database of the default's network in int8 (chosen for speed) is not told to move.
    assert (move_hint(int8_spec, "d.db") is None) == (name == "sface-int8")


def test_model_names_paths_and_databases(tmp_path, sface_onnx, offline_weights):
    assert resolve_model(None) == (SPECS["sface"], None)
    assert resolve_model("mobilefacenet")[0] is MOBILEFACENET
    # A database keeps its model; a catalogued file given by path is that model.
    assert resolve_model(None, [DLIB.model_id])[0] is DLIB
    assert resolve_model(sface_onnx, [SFACE.model_id]) == (SFACE, sface_onnx)
    with pytest.raises(
        InputError, match=r"faces.db: enrolled with dlib, not sface; .*--model sface"
    ):
        resolve_model("sface", [DLIB.model_id], "faces.db")
    # Another ONNX file is its own model, never compared with the catalogued ones.
    other = tmp_path / "mine.onnx"
    other.write_bytes(b"not the catalogued file")
    spec, path = resolve_model(other)
    assert path == other and spec.model_id.startswith(SFACE.model_id + "@")
    assert spec_for_model_id(spec.model_id) is None
    with pytest.raises(InputError, match="a model file given by path"):
        resolve_model(None, [spec.model_id])
    with pytest.raises(InputError, match="no such model file"):
        resolve_model(tmp_path / "missing.onnx")


def test_dlib_spec_scales_input_as_dlib_does():
    from shared.backbones.dlib_resnet import INPUT_SCALE, RGB_MEANS

    np.testing.assert_array_equal(np.float32(DLIB.input_mean), RGB_MEANS)
    assert set(DLIB.input_std) == {INPUT_SCALE}
