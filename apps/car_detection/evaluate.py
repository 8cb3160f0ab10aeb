"""How well a detector finds the labelled objects of a YOLO-format image folder (mAP).

A folder holds ``images/`` and ``labels/`` with one ``<stem>.txt`` per image, a line per object:
``class centre_x centre_y width height``, normalised to the image (the format of the Roboflow
vehicles set in ``../shared/data/cars/vehicles_openimages``). The dataset's classes need not be
the model's: ``class_map`` says which model class stands for which dataset class. Objects of a
dataset class the model cannot name (an ambulance, for a COCO model) are neither required nor
held against it: they are dropped, and so are predictions lying on them (IoU >= 0.5).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from apps.car_detection.decode import DEFAULT_IOU, DEFAULT_MAX_DET, Network, detect
from shared.boxes import cxcywh_to_xyxy, iou
from shared.errors import InputError
from shared.images import list_images, read_image
from shared.metrics import GroundTruth, MeanAveragePrecision, mean_average_precision

# The Roboflow "Vehicles-OpenImages" classes (Ambulance, Bus, Car, Motorcycle, Truck) as COCO
# ids; COCO has no ambulance.
OPENIMAGES_VEHICLES_TO_COCO = {1: 5, 2: 2, 3: 3, 4: 7}
IGNORE_IOU = 0.5


def read_yolo_labels(path: Path, width: int, height: int) -> GroundTruth:
    """One image's labels as pixel ``[x1, y1, x2, y2]`` boxes and class ids (no file: none)."""
    if not path.is_file():
        return GroundTruth(np.zeros((0, 4)), np.zeros(0, dtype=np.int64))
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            rows.append([float(value) for value in fields[:5]])
        except ValueError:
            raise InputError(f"{path}:{number}: not a YOLO label line: {line!r}") from None
        if len(fields) < 5:
            raise InputError(f"{path}:{number}: expected 'class cx cy w h', got {line!r}")
    labels = np.asarray(rows, dtype=np.float64).reshape(-1, 5)
    boxes = cxcywh_to_xyxy(labels[:, 1:]) * [width, height, width, height]
    return GroundTruth(boxes, labels[:, 0].astype(np.int64))


def _drop_unnamed(
    boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, truth: GroundTruth, named
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], GroundTruth]:
    """Remove ground truth the model cannot name, and the predictions lying on it."""
    unnamed = ~np.isin(truth.classes, list(named))
    on_unnamed = iou(boxes, truth.boxes[unnamed]).max(axis=1, initial=0.0) >= IGNORE_IOU
    keep = ~on_unnamed
    return (boxes[keep], scores[keep], classes[keep]), GroundTruth(
        truth.boxes[~unnamed], truth.classes[~unnamed]
    )


def evaluate_folder(
    model: Network,
    folder: Path | str,
    class_map: Mapping[int, int],
    *,
    conf: float = 0.005,
    iou_threshold: float = DEFAULT_IOU,
    iou_thresholds: float | tuple[float, ...] = 0.5,
    batch: int = 8,
    max_det: int = DEFAULT_MAX_DET,
) -> MeanAveragePrecision:
    """mAP of ``model`` on ``folder`` (``images/`` + ``labels/``), in the dataset's class ids.

    ``class_map`` maps dataset class -> model class. A low ``conf`` keeps the whole
    precision-recall curve, as Darknet's ``detector map`` does (it uses 0.005); like it, every
    class above ``conf`` counts for a box (``multi_label``), so a car that also scores as a truck
    is not lost to mAP when its best class is wrong.
    """
    folder = Path(folder)
    images = list_images(folder / "images")
    if not images:
        raise InputError(f"{folder / 'images'}: no images to evaluate on")
    to_dataset = {model_class: dataset for dataset, model_class in class_map.items()}
    predictions, ground_truth = [], []
    for start in range(0, len(images), batch):
        paths = images[start : start + batch]
        frames = [read_image(path) for path in paths]
        found = detect(
            model, frames, conf, iou_threshold, list(to_dataset), max_det, multi_label=True
        )
        for path, frame, detections in zip(paths, frames, found, strict=True):
            height, width = frame.shape[:2]
            truth = read_yolo_labels(folder / "labels" / f"{path.stem}.txt", width, height)
            classes = np.array([to_dataset[int(c)] for c in detections.class_ids], dtype=np.int64)
            kept, truth = _drop_unnamed(
                detections.boxes, detections.scores, classes, truth, class_map
            )
            predictions.append(kept)
            ground_truth.append(truth)
    return mean_average_precision(
        predictions, ground_truth, iou_thresholds, num_classes=max(class_map) + 1
    )
