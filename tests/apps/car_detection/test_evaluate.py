"""mAP on a YOLO-format folder: label reading, objects the model cannot name, a real figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from apps.car_detection.darknet import load_darknet
from apps.car_detection.evaluate import (
    OPENIMAGES_VEHICLES_TO_COCO,
    _drop_unnamed,
    evaluate_folder,
    read_yolo_labels,
)
from shared.errors import InputError
from shared.metrics import GroundTruth


def test_yolo_labels_become_pixel_corner_boxes(tmp_path: Path):
    path = tmp_path / "a.txt"
    path.write_text("2 0.5 0.25 0.2 0.5\n\n0 0.1 0.9 0.2 0.2")
    truth = read_yolo_labels(path, width=200, height=100)
    np.testing.assert_allclose(truth.boxes, [[80, 0, 120, 50], [0, 80, 40, 100]])
    assert truth.classes.tolist() == [2, 0]
    assert read_yolo_labels(tmp_path / "none.txt", 200, 100).boxes.shape == (0, 4)
    path.write_text("2 0.5 0.25\n")
    with pytest.raises(InputError, match=r"a.txt:1: expected 'class cx cy w h'"):
        read_yolo_labels(path, 200, 100)


def test_objects_the_model_cannot_name_are_dropped_with_predictions_on_them():
    truth = GroundTruth(np.array([[0, 0, 10, 10], [50, 50, 60, 60]]), np.array([0, 2]))
    boxes = np.array([[0, 0, 10, 11], [50, 50, 60, 60], [100, 100, 110, 110]], dtype=float)
    scores, classes = np.array([0.9, 0.8, 0.7]), np.array([2, 2, 2])
    (kept_boxes, kept_scores, kept_classes), kept_truth = _drop_unnamed(
        boxes, scores, classes, truth, OPENIMAGES_VEHICLES_TO_COCO
    )
    # Class 0 (ambulance) has no COCO class: it and the car box lying on it go.
    np.testing.assert_array_equal(kept_boxes, boxes[1:])
    assert kept_scores.tolist() == [0.8, 0.7] and kept_classes.tolist() == [2, 2]
    assert kept_truth.classes.tolist() == [2]


@pytest.mark.slow
def test_yolo_fastest_on_the_vehicles_validation_split(weights_dir: Path, data_dir: Path):
    """mAP@0.5 over bus, car, motorcycle and truck (measured 0.61 for -xl, 0.50 for 1.1)."""
    folder = weights_dir / "yolo-fastest"
    split = data_dir / "cars/vehicles_openimages/valid"
    scores = {}
    for name in ("yolo-fastest-1.1", "yolo-fastest-1.1-xl"):
        model = load_darknet(folder / f"{name}.cfg", folder / f"{name}.weights")
        scores[name] = evaluate_folder(model, split, OPENIMAGES_VEHICLES_TO_COCO)
    xl = scores["yolo-fastest-1.1-xl"]
    assert xl.num_ground_truth.tolist() == [0, 23, 119, 23, 30]
    assert xl.map > 0.55 and xl.per_class[2] > 0.35
    # The larger model is the better one, as its published COCO mAP (34.3 % vs 24.4 %) says.
    assert xl.map > scores["yolo-fastest-1.1"].map + 0.05
