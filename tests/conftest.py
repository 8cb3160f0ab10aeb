"""Fixtures shared by all tests.

Real weights and data live beside the checkout in ``../shared`` (read-only, present
in CI). Tests that need them ask for these fixtures, which skip with a clear reason
when the folder is absent. ``CONVNET_APPS_SHARED`` points elsewhere if needed.
``CONVNET_APPS_REQUIRE_SHARED=1`` (set by ``.ci/run``) turns those skips into errors,
so a CI run without the resources fails instead of passing on the tests that remain.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO_ROOT = Path(__file__).resolve().parents[1]


REQUIRE_SHARED = "CONVNET_APPS_REQUIRE_SHARED"


def _shared_resources() -> Path:
    return Path(os.environ.get("CONVNET_APPS_SHARED", REPO_ROOT.parent / "shared")).resolve()


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The read-only resources folder (weights, data, reference figures)."""
    path = _shared_resources()
    if not (path / "weights").is_dir():
        reason = f"shared resources not found at {path} (set CONVNET_APPS_SHARED)"
        if os.environ.get(REQUIRE_SHARED) == "1":
            pytest.fail(f"{reason}; {REQUIRE_SHARED}=1 requires them", pytrace=False)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def weights_dir(shared_dir: Path) -> Path:
    return shared_dir / "weights"


@pytest.fixture(scope="session")
def data_dir(shared_dir: Path) -> Path:
    return shared_dir / "data"


@pytest.fixture(scope="session")
def reference_dir(shared_dir: Path) -> Path:
    return shared_dir / "reference"


@pytest.fixture
def offline_weights(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, weights_dir: Path) -> Path:
    """Resolve weights from ../shared/weights only, with a fresh empty cache per test."""
    monkeypatch.setenv("CONVNET_APPS_WEIGHTS_DIR", str(weights_dir))
    monkeypatch.setenv("CONVNET_APPS_CACHE", str(tmp_path / "cache"))
    return weights_dir
