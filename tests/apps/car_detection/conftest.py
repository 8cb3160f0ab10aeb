"""Fixtures for the car-detection tests; the helpers behind them are in darknet_oracle.py."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from darknet_oracle import random_parameters

from apps.car_detection.darknet import NetworkPlan, write_darknet_weights
from apps.car_detection.network import DetectorNetwork, load_network
from shared import weights

CHECKOUT_CATALOGUE = Path(__file__).resolve().parents[3] / "data" / "weights.tsv"


@pytest.fixture(autouse=True)
def checkout_catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    """Resolve models through this checkout's catalogue.

    An editable install ships the ``convnet_apps_data`` of whichever checkout it was made
    from, which may lack this branch's rows.
    """
    monkeypatch.setattr(weights, "catalogue_text", lambda: CHECKOUT_CATALOGUE.read_text("utf-8"))


@pytest.fixture
def random_weights(tmp_path: Path) -> Callable[[NetworkPlan, int], Path]:
    """Write random Darknet weights for a plan into tmp_path and return the file."""

    def write(plan: NetworkPlan, seed: int = 0) -> Path:
        path = tmp_path / f"random-{seed}.weights"
        write_darknet_weights(path, plan, random_parameters(plan, seed))
        return path

    return write


@pytest.fixture(scope="session")
def test_images(shared_dir: Path) -> list[Path]:
    """Two real photos of different sizes and aspect ratios."""
    return [
        shared_dir / "weights/yolo-fastest/sample_images/dog.jpg",
        shared_dir / "data/cars/driveai/images/0001.jpg",
    ]


@pytest.fixture(scope="session")
def compiled_cache(tmp_path_factory: pytest.TempPathFactory, weights_dir: Path) -> Path:
    """A cache holding the default model (Yolo-Fastest-1.1-xl at 320) compiled for OpenVINO.

    Compiling takes seconds, so it is done once per session and copied into the fresh cache of
    each ``offline_weights`` test: those tests run what a user runs after the first time.
    """
    cache = tmp_path_factory.mktemp("compiled-cache")
    folder = weights_dir / "yolo-fastest"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("CONVNET_APPS_CACHE", str(cache))
        network = load_network(
            folder / "yolo-fastest-1.1-xl.cfg", folder / "yolo-fastest-1.1-xl.weights"
        )
    assert network.runtime == "openvino"
    return cache


@pytest.fixture
def offline_weights(offline_weights: Path, compiled_cache: Path, tmp_path: Path) -> Path:
    """The root fixture's fresh cache, holding the compiled default model."""
    shutil.copytree(compiled_cache / "compiled", tmp_path / "cache" / "compiled")
    return offline_weights


@pytest.fixture
def openvino_xl(offline_weights: Path) -> DetectorNetwork:
    """Yolo-Fastest-1.1-xl at 320 compiled by OpenVINO, read from the cache."""
    folder = offline_weights / "yolo-fastest"
    network = load_network(
        folder / "yolo-fastest-1.1-xl.cfg",
        folder / "yolo-fastest-1.1-xl.weights",
        runtime="openvino",
    )
    return network
