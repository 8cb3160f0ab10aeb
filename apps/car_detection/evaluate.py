"""How well a detector finds the labelled objects of a dataset: AP per class, mAP, P-R curves.

The detector is anything with ``names`` and ``detect(frames) -> [[Detection, ...], ...]``
(``detector.YoloDetector``, whatever runtime it uses), built with a low score floor
(``SCORE_FLOOR``, Darknet's ``detector map`` value) so the whole precision-recall curve is seen,
and ``multi_label`` (every class above the floor, as Darknet's mAP mode). The dataset's classes are
mapped to the model's (``datasets.resolve_class_map``); objects of an ignored class (an ambulance,
for a COCO model) and VOC ``difficult`` objects are neither required nor held against the
detector: they are dropped, and so are predictions lying on them (IoU >= ``IGNORE_IOU``).

Every figure comes from ``shared.metrics``: ``mean_average_precision`` over COCO's ten IoU
thresholds (all-point interpolation) gives AP@0.5, AP@0.75 and AP@[.5:.95];
``match_detections`` and ``precision_recall_curve`` give the curve at IoU 0.5 and the precision
and recall at the chosen score threshold.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from apps.car_detection.datasets import Dataset
from apps.car_detection.decode import DEFAULT_CONF
from shared.boxes import iou
from shared.files import atomic_output
from shared.images import read_image
from shared.metrics import (
    COCO_IOU_THRESHOLDS,
    Detections,
    GroundTruth,
    match_detections,
    mean_average_precision,
    precision_recall_curve,
)

SCORE_FLOOR = 0.005
IGNORE_IOU = 0.5
AP50, AP75 = 0, 5  # columns of COCO_IOU_THRESHOLDS


@dataclass
class ClassResult:
    """One model class over the dataset: counts, APs, the operating point and the P-R curve.

    ``matched`` and ``scores`` are the class's predictions (score >= the floor) and whether each
    found a ground-truth box at IoU 0.5: with ``ground_truth`` they define the P-R curve.
    """

    name: str
    ground_truth: int
    detections: int
    ap50: float
    ap75: float
    ap: float
    precision: float
    recall: float
    matched: np.ndarray = field(repr=False)
    scores: np.ndarray = field(repr=False)

    def curve(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(precision, recall, score thresholds) at IoU 0.5, highest threshold first."""
        return precision_recall_curve(self.matched, self.scores, self.ground_truth)

    def to_dict(self) -> dict:
        values = {
            "ground_truth": self.ground_truth,
            "detections": self.detections,
            "ap50": self.ap50,
            "ap75": self.ap75,
            "ap50_95": self.ap,
            "precision": self.precision,
            "recall": self.recall,
        }
        return {
            key: None if isinstance(v, float) and math.isnan(v) else v for key, v in values.items()
        }


@dataclass
class Evaluation:
    """The result of ``evaluate``: per-class results and the means over classes with objects."""

    images: int
    conf: float
    classes: list[ClassResult]
    ignored: int
    map50: float
    map75: float
    map: float

    def by_name(self) -> dict[str, ClassResult]:
        return {result.name: result for result in self.classes}

    def to_dict(self) -> dict:
        def number(value: float) -> float | None:
            return None if math.isnan(value) else value

        return {
            "images": self.images,
            "conf": self.conf,
            "ignored_objects": self.ignored,
            "map50": number(self.map50),
            "map75": number(self.map75),
            "map50_95": number(self.map),
            "classes": {result.name: result.to_dict() for result in self.classes},
        }


def _truth(sample, width: int, height: int, class_map: Sequence[int | None]):
    """(ground truth in model classes, ignored boxes), both in pixels."""
    boxes = sample.pixel_boxes(width, height)
    mapped = np.array([-1 if class_map[c] is None else class_map[c] for c in sample.classes])
    ignored = sample.ignore | (mapped < 0) if mapped.size else sample.ignore
    truth = GroundTruth(boxes[~ignored], mapped[~ignored].astype(np.int64))
    return truth, boxes[ignored]


def _drop_on_ignored(detections: Detections, ignored_boxes: np.ndarray) -> Detections:
    """Predictions lying on an ignored object (IoU >= IGNORE_IOU) count nowhere."""
    on_ignored = iou(detections.boxes, ignored_boxes).max(axis=1, initial=0.0) >= IGNORE_IOU
    keep = ~on_ignored
    return Detections(detections.boxes[keep], detections.scores[keep], detections.classes[keep])


def _as_arrays(found: Sequence) -> Detections:
    """A list of ``results.Detection`` as metric arrays."""
    return Detections(
        np.array([d.box for d in found], dtype=np.float64).reshape(-1, 4),
        np.array([d.score for d in found], dtype=np.float64),
        np.array([d.class_id for d in found], dtype=np.int64),
    )


def collect(
    detector,
    dataset: Dataset,
    class_map: Sequence[int | None],
    *,
    batch: int = 8,
    on_image: Callable[[], None] | None = None,
) -> tuple[list[Detections], list[GroundTruth], int]:
    """Run ``detector`` over the dataset: (predictions, ground truth, ignored objects) per image."""
    predictions, truths, ignored = [], [], 0
    samples = dataset.samples
    for start in range(0, len(samples), batch):
        chunk = samples[start : start + batch]
        frames = [read_image(sample.image) for sample in chunk]
        for sample, frame, found in zip(chunk, frames, detector.detect(frames), strict=True):
            truth, ignored_boxes = _truth(sample, frame.shape[1], frame.shape[0], class_map)
            predictions.append(_drop_on_ignored(_as_arrays(found), ignored_boxes))
            truths.append(truth)
            ignored += len(ignored_boxes)
            if on_image is not None:
                on_image()
    return predictions, truths, ignored


def score(
    predictions: Sequence[Detections],
    truths: Sequence[GroundTruth],
    names: Sequence[str],
    class_ids: Sequence[int],
    conf: float = DEFAULT_CONF,
    ignored: int = 0,
) -> Evaluation:
    """Per-class AP (IoU 0.5, 0.75 and .5:.95), the means, and P/R at score ``conf``.

    ``names`` are the model's class names and ``class_ids`` the classes evaluated (those the
    dataset maps to); means are over those with ground truth.
    """
    summary = mean_average_precision(
        predictions, truths, COCO_IOU_THRESHOLDS, num_classes=len(names)
    )
    matched = [
        match_detections(p.boxes, p.scores, p.classes, t.boxes, t.classes, 0.5) >= 0
        for p, t in zip(predictions, truths, strict=True)
    ]
    all_matched = np.concatenate(matched) if matched else np.zeros(0, bool)
    all_scores = np.concatenate([p.scores for p in predictions] or [np.zeros(0)])
    all_classes = np.concatenate([p.classes for p in predictions] or [np.zeros(0, np.int64)])
    results = []
    for class_id in class_ids:
        mine = all_classes == class_id
        gt = int(summary.num_ground_truth[class_id])
        precision_values, recall_values, thresholds = precision_recall_curve(
            all_matched[mine], all_scores[mine], gt
        )
        at = np.flatnonzero(thresholds >= conf)
        operating = (
            (float(precision_values[at[-1]]), float(recall_values[at[-1]]))
            if at.size
            else (0.0, 0.0)
        )
        results.append(
            ClassResult(
                name=names[class_id],
                ground_truth=gt,
                detections=int(np.count_nonzero(all_scores[mine] >= conf)),
                ap50=float(summary.ap[class_id, AP50]),
                ap75=float(summary.ap[class_id, AP75]),
                ap=float(summary.ap[class_id].mean()),
                precision=operating[0],
                recall=operating[1],
                matched=all_matched[mine],
                scores=all_scores[mine],
            )
        )
    with_truth = [r for r in results if r.ground_truth]

    def mean(values: list[float]) -> float:
        return float(np.mean(values)) if values else float("nan")

    return Evaluation(
        images=len(truths),
        conf=conf,
        classes=results,
        ignored=ignored,
        map50=mean([r.ap50 for r in with_truth]),
        map75=mean([r.ap75 for r in with_truth]),
        map=mean([r.ap for r in with_truth]),
    )


def evaluate(
    detector,
    dataset: Dataset,
    class_map: Sequence[int | None],
    *,
    conf: float = DEFAULT_CONF,
    batch: int = 8,
    on_image: Callable[[], None] | None = None,
) -> Evaluation:
    """Evaluate ``detector`` (built with score floor ``SCORE_FLOOR``) on ``dataset``.

    ``class_map[c]`` is the model class standing for dataset class ``c`` (None: ignored);
    ``conf`` is the score at which precision and recall are reported.
    """
    predictions, truths, ignored = collect(
        detector, dataset, class_map, batch=batch, on_image=on_image
    )
    class_ids = sorted({c for c in class_map if c is not None})
    return score(predictions, truths, detector.names, class_ids, conf, ignored)


# --- outputs --------------------------------------------------------------------------------


def write_report(evaluation: Evaluation, path: Path | str, extra: dict | None = None) -> Path:
    """The evaluation as JSON (``extra`` adds e.g. the command's settings)."""
    path = Path(path)
    with atomic_output(path) as temp:
        temp.write_text(json.dumps({**(extra or {}), **evaluation.to_dict()}, indent=2) + "\n")
    return path


def _file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "class"


def plot_pr_curves(evaluation: Evaluation, folder: Path | str) -> list[Path]:
    """One PNG per class with ground truth: its P-R curve at IoU 0.5, AP and operating point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for result in evaluation.classes:
        if not result.ground_truth:
            continue
        precision_values, recall_values, _ = result.curve()
        figure, axes = plt.subplots(figsize=(5, 4), dpi=100)
        axes.plot(np.r_[0.0, recall_values], np.r_[1.0, precision_values], drawstyle="steps-post")
        axes.plot([result.recall], [result.precision], "o", label=f"score >= {evaluation.conf}")
        axes.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision")
        axes.set_title(f"{result.name}: AP@0.5 {result.ap50:.3f} ({result.ground_truth} objects)")
        axes.grid(alpha=0.3)
        axes.legend(loc="lower left")
        path = folder / f"pr_{_file_name(result.name)}.png"
        with atomic_output(path) as temp:
            figure.savefig(temp, format="png")
        plt.close(figure)
        written.append(path)
    return written


def render(evaluation: Evaluation) -> str:
    """The evaluation as a table a person reads."""
    header = (
        f"{'class':<14}{'objects':>8}{'found':>7}{'AP50':>8}{'AP75':>8}{'AP':>8}{'P':>7}{'R':>7}"
    )
    lines = [header]
    for r in evaluation.classes:
        lines.append(
            f"{r.name:<14}{r.ground_truth:>8}{r.detections:>7}{r.ap50:>8.3f}{r.ap75:>8.3f}"
            f"{r.ap:>8.3f}{r.precision:>7.3f}{r.recall:>7.3f}"
        )
    lines.append(
        f"{'mean':<14}{'':>15}{evaluation.map50:>8.3f}{evaluation.map75:>8.3f}{evaluation.map:>8.3f}"
    )
    lines.append(
        f"{evaluation.images} images; P and R at score >= {evaluation.conf}; "
        f"{evaluation.ignored} ignored objects; AP is AP@[.5:.95], all-point interpolation"
    )
    return "\n".join(lines)
