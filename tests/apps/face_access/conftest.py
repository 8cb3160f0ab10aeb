"""Fixtures of the face tests: the real models, loaded once per session from ../shared and
the installed face-recognition-models package (explicit paths, so no cache is touched)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from apps.face_access.detection import FaceDetector
from apps.face_access.embedding import FaceEmbedder
from apps.face_access.pipeline import FacePipeline
from shared.backbones.dlib_resnet import DAT_FILENAME


@pytest.fixture(scope="session")
def dlib_dat() -> Path:
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("face-recognition-models is not installed")
    return Path(spec.submodule_search_locations[0]) / "models" / DAT_FILENAME


@pytest.fixture(scope="session")
def yunet_onnx(weights_dir: Path) -> Path:
    return weights_dir / "yunet" / "yunet_s_640_640.onnx"


@pytest.fixture(scope="session")
def sface_onnx(weights_dir: Path) -> Path:
    return weights_dir / "face_embedders" / "sface" / "face_recognition_sface_2021dec_int8bq.onnx"


@pytest.fixture(scope="session")
def mobilefacenet_onnx(weights_dir: Path) -> Path:
    return weights_dir / "face_embedders" / "mobilefacenet_foamliu" / "MobileFaceNet.onnx"


@pytest.fixture(scope="session")
def pipeline(yunet_onnx: Path, dlib_dat: Path) -> FacePipeline:
    return FacePipeline(FaceDetector(yunet_onnx), FaceEmbedder("dlib", dlib_dat))
