"""Fixtures for the car-detection tests; the helpers behind them are in darknet_oracle.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from darknet_oracle import random_parameters

from apps.car_detection.darknet import NetworkPlan, write_darknet_weights
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
