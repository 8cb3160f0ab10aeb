"""Model files, class names and --classes choices become paths and ids, or one clear error."""

from __future__ import annotations

from pathlib import Path

import pytest

from apps.car_detection.catalogue import (
    darknet_files,
    load_model_and_names,
    read_class_names,
    select_classes,
)
from shared.errors import InputError, WeightsError

COCO = read_class_names()


def test_shipped_coco_names_and_class_choices():
    assert len(COCO) == 80 and COCO[2] == "car"
    assert select_classes("vehicles", COCO) == [2, 5, 7]  # car, bus, truck
    assert select_classes("all", COCO) is None
    assert select_classes(" Car, person ", COCO) == [0, 2]
    with pytest.raises(InputError, match=r"unknown class 'spaceship' in --classes; known: person"):
        select_classes("car,spaceship", COCO)


def test_own_files_come_as_a_pair(tmp_path: Path):
    cfg, weights = tmp_path / "a.cfg", tmp_path / "a.weights"
    cfg.write_text("[net]\n")
    assert darknet_files(cfg=cfg, weights=weights) == (cfg, weights)
    with pytest.raises(InputError, match=r"--cfg needs --weights too"):
        darknet_files(cfg=cfg)
    with pytest.raises(InputError, match=r"missing.cfg: cfg file not found"):
        darknet_files(cfg=tmp_path / "missing.cfg", weights=weights)
    with pytest.raises(InputError, match=r"holds no class names"):
        (tmp_path / "empty.names").write_text("\n\n")
        read_class_names(tmp_path / "empty.names")


def test_catalogue_model_resolves_offline_and_names_must_agree(offline_weights, tmp_path: Path):
    cfg, weights = darknet_files()
    assert (cfg.name, weights.name) == ("yolo-fastest-1.1-xl.cfg", "yolo-fastest-1.1-xl.weights")
    model, names = load_model_and_names("yolo-fastest-1.1", size=416)
    assert (model.width, model.height, len(names)) == (416, 416, 80)
    three = tmp_path / "three.names"
    three.write_text("a\nb\nc\n")
    with pytest.raises(InputError, match=r"3 class names but .* predicts 80 classes"):
        load_model_and_names(names=three)
    with pytest.raises(WeightsError, match=r"unknown model 'yolov9'"):
        darknet_files("yolov9")
