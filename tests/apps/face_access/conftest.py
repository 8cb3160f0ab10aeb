"""Fixtures of the face tests: the real models, loaded once per session from ../shared and
the installed face-recognition-models package (explicit paths, so the weights cache is not
touched). The embedders compile for OpenVINO into one session folder, never the user's cache."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from apps.face_access.detection import FaceDetector
from apps.face_access.embedding import FaceEmbedder
from apps.face_access.pipeline import FacePipeline
from shared.backbones.dlib_resnet import DAT_FILENAME


@pytest.fixture(scope="session")
def compiled_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compiled")


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory, compiled_models: Path):
    """A cache for the whole session (session-scoped models are built before any test's own)."""
    cache = tmp_path_factory.mktemp("cache")
    (cache / "compiled").symlink_to(compiled_models)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVNET_APPS_CACHE", str(cache))
        yield cache


@pytest.fixture
def offline_weights(offline_weights: Path, compiled_models: Path, tmp_path: Path) -> Path:
    """The root fixture's fresh cache, sharing the session's compiled models: each embedder is
    compiled once per session, as on a user's machine after the first run."""
    (tmp_path / "cache").mkdir(exist_ok=True)
    (tmp_path / "cache" / "compiled").symlink_to(compiled_models)
    return offline_weights


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
