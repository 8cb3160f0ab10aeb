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
from apps.car_detection.cfg import read_cfg
from apps.car_detection.darknet import head_config, header_size, plan_network
from shared.errors import InputError, WeightsError
from shared.weights import catalogue, resolve_file

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
    model, names = load_model_and_names("yolo-fastest-1.1", size=416, runtime="tensorflow")
    assert (model.width, model.height, len(names)) == (416, 416, 80)
    three = tmp_path / "three.names"
    three.write_text("a\nb\nc\n")
    with pytest.raises(InputError, match=r"3 class names but .* predicts 80 classes"):
        load_model_and_names(names=three)
    with pytest.raises(WeightsError, match=r"unknown model 'yolov9'"):
        darknet_files("yolov9")


def test_yolov2_weights_size_in_the_catalogue_follows_from_its_cfg(offline_weights):
    """The catalogued size of yolov2.weights is what its cfg implies, so the row cannot drift.

    The file (format 0.1, so a 16-byte header with an int32 'seen') holds one float32 per
    parameter; 50,983,561 is also the parameter count of the course's converted yolo.h5.
    """
    cfg = resolve_file("yolov2", "yolov2.cfg")  # the catalogued cfg, checked by its sha256
    plan = plan_network(read_cfg(cfg))
    assert plan.parameter_count == 50_983_561
    (entry,) = [e for e in catalogue()["yolov2"] if e.file == "yolov2.weights"]
    assert entry.size == header_size(0, 1) + 4 * plan.parameter_count == 203_934_260


def test_yolov2_at_608_is_the_course_network(offline_weights, data_dir: Path):
    """--size 608 gives the exercise's YOLOv2: a 19x19 grid of 5 anchors x (5 + 80) values."""
    plan = plan_network(read_cfg(resolve_file("yolov2", "yolov2.cfg")), (608, 608))
    (head,) = plan.head_indices
    assert plan.layers[head].shape == (19, 19, 5 * (5 + 80))
    config = head_config(plan.layers[head], plan.input_shape)
    assert (config["kind"], config["classes"]) == ("region", 80)
    # The exercise's anchors, in grid cells (a region head's unit), are the cfg's.
    text = (data_dir / "cars/driveai/model_data/yolo_anchors.txt").read_text()
    course = [float(value) for value in text.split(",")]
    assert config["anchors"] == [course[i : i + 2] for i in range(0, 10, 2)]
