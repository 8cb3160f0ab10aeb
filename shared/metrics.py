"""Evaluation metrics for the three apps, as plain NumPy functions.

One definition per metric, written down in its docstring, so that the car
detector's mAP, the door's TAR@FAR and the training curves in TensorBoard all
mean the same thing. Label arguments come first, as in scikit-learn
(``metric(y_true, y_pred_or_scores)``); the functions agree with scikit-learn
where it has the same metric (tests check it), and say so where they differ.

Conventions:
- a *score* is higher for "more positive"; distances (lower = same person) are
  handled by ``tar_at_far`` and ``eer`` with ``higher_is_better=False``, or by
  passing ``-distances`` to the curve functions;
- a ratio whose denominator is zero (precision with no predicted positive, ...)
  is 0.0, as scikit-learn's default ``zero_division`` gives, without a warning;
- an undefined AP (no positive at all) is ``nan`` and is left out of means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy.optimize import linear_sum_assignment

from shared.boxes import iou

COCO_IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)
"""IoU thresholds 0.50, 0.55, ..., 0.95 of COCO's mAP@[.5:.95] (as pycocotools builds them)."""


def _vector(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim == 2 and 1 in array.shape:  # a column such as Keras's (batch, 1) labels
        array = array.reshape(-1)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    return array


def _paired(y_true, y_other, other_name: str) -> tuple[np.ndarray, np.ndarray]:
    """Both arguments as 1-D arrays of the same length, or a clear ValueError."""
    y_true = _vector(y_true, "y_true")
    y_other = _vector(y_other, other_name)
    if y_true.shape[0] != y_other.shape[0]:
        raise ValueError(
            f"y_true has {y_true.shape[0]} values but {other_name} has {y_other.shape[0]}"
        )
    return y_true, y_other


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else 0.0


# --- classification -------------------------------------------------------------


def accuracy(y_true, y_pred) -> float:
    """Fraction of predictions equal to the label: (TP + TN) / N for two classes."""
    y_true, y_pred = _paired(y_true, y_pred, "y_pred")
    return _ratio(np.count_nonzero(y_true == y_pred), y_true.shape[0])


def _positive_counts(y_true, y_pred, positive_label) -> tuple[int, int, int]:
    """True positives, false positives and false negatives for one positive label."""
    y_true, y_pred = _paired(y_true, y_pred, "y_pred")
    actual = y_true == positive_label
    predicted = y_pred == positive_label
    true_positives = np.count_nonzero(actual & predicted)
    return (
        true_positives,
        np.count_nonzero(predicted) - true_positives,
        np.count_nonzero(actual) - true_positives,
    )


def precision(y_true, y_pred, positive_label=1) -> float:
    """TP / (TP + FP): of the items predicted positive, the fraction that are."""
    true_positives, false_positives, _ = _positive_counts(y_true, y_pred, positive_label)
    return _ratio(true_positives, true_positives + false_positives)


def recall(y_true, y_pred, positive_label=1) -> float:
    """TP / (TP + FN): of the positive items, the fraction found (also TPR, TAR)."""
    true_positives, _, false_negatives = _positive_counts(y_true, y_pred, positive_label)
    return _ratio(true_positives, true_positives + false_negatives)


def f1(y_true, y_pred, positive_label=1) -> float:
    """Harmonic mean of precision and recall: 2 TP / (2 TP + FP + FN)."""
    true_positives, false_positives, false_negatives = _positive_counts(
        y_true, y_pred, positive_label
    )
    return _ratio(2 * true_positives, 2 * true_positives + false_positives + false_negatives)


def confusion_matrix(y_true, y_pred, num_classes: int | None = None) -> np.ndarray:
    """Counts ``C[i, j]`` of items of true class ``i`` predicted as class ``j``.

    Classes are the integers ``0 .. num_classes - 1`` (default: one more than the
    largest label seen). Rows are the truth and columns the prediction, as in
    scikit-learn, so the diagonal holds the correct predictions.
    """
    y_true, y_pred = _paired(y_true, y_pred, "y_pred")
    y_true = y_true.astype(np.int64)
    y_pred = y_pred.astype(np.int64)
    if num_classes is None:
        num_classes = int(max(y_true.max(initial=-1), y_pred.max(initial=-1))) + 1
    for name, labels in (("y_true", y_true), ("y_pred", y_pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(f"{name} holds labels outside 0..{num_classes - 1}")
    flat = np.bincount(y_true * num_classes + y_pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


# --- ranking curves ------------------------------------------------------------


def _ranked_counts(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative true and false positives when accepting ``score >= t``.

    One entry per distinct score ``t``, from the highest score down. Tied scores
    are accepted together, so the curves do not depend on the order of ties.
    """
    y_true, scores = _paired(y_true, scores, "scores")
    scores = scores.astype(np.float64)
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    order = np.argsort(-scores, kind="stable")
    sorted_scores = scores[order]
    positives = y_true[order].astype(bool)
    last_of_each_score = np.flatnonzero(np.diff(sorted_scores, append=-np.inf))
    true_positives = np.cumsum(positives)[last_of_each_score]
    false_positives = last_of_each_score + 1 - true_positives
    return true_positives, false_positives, sorted_scores[last_of_each_score]


def precision_recall_curve(
    y_true, scores, num_positives: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision and recall when accepting ``score >= t``, for every distinct score ``t``.

    ``y_true`` marks positives with 1 (or True) and negatives with 0.
    Returns ``(precision, recall, thresholds)`` ordered by decreasing threshold,
    so recall never decreases. ``num_positives`` is the recall denominator; it
    defaults to the number of positive labels, and object detection passes the
    number of ground-truth boxes, since boxes that no detection found are
    positives missing from ``y_true``. Unlike scikit-learn, no artificial end
    point (precision 1, recall 0) is appended and the order is not reversed.
    """
    true_positives, false_positives, thresholds = _ranked_counts(y_true, scores)
    if num_positives is None:
        num_positives = int(np.count_nonzero(_vector(y_true, "y_true")))
    precision_values = true_positives / np.maximum(true_positives + false_positives, 1)
    recall_values = true_positives / num_positives if num_positives else np.zeros(len(thresholds))
    return precision_values, recall_values, thresholds


def interpolated_average_precision(
    precision_values, recall_values, recall_points: int | None = None
) -> float:
    """Area under the monotone envelope of a P-R curve ordered by increasing recall.

    The envelope replaces each precision by the best precision at any equal or
    higher recall, which removes the zig-zags of the raw curve.
    - ``recall_points=None`` (all-point, PASCAL VOC 2010+): the envelope's exact
      area, the sum over recall steps of (step width) x (envelope at the step).
    - ``recall_points=101`` (COCO) or ``11`` (VOC 2007): the mean of the
      envelope sampled at that many evenly spaced recalls 0..1, where a recall
      beyond the curve's last point scores 0.
    Recall not reached by the curve contributes nothing in every variant.
    """
    precision_values = np.asarray(precision_values, dtype=np.float64)
    recall_values = np.asarray(recall_values, dtype=np.float64)
    if precision_values.shape != recall_values.shape:
        raise ValueError("precision and recall must have the same length")
    envelope = np.maximum.accumulate(precision_values[::-1])[::-1]
    if recall_points is None:
        steps = np.diff(recall_values, prepend=0.0)
        return float(np.sum(steps * envelope))
    sampled_recalls = np.linspace(0.0, 1.0, recall_points)
    first_reaching = np.searchsorted(recall_values, sampled_recalls, side="left")
    padded_envelope = np.append(envelope, 0.0)
    return float(np.mean(padded_envelope[first_reaching]))


def average_precision(
    y_true, scores, num_positives: int | None = None, recall_points: int | None = None
) -> float:
    """AP: the interpolated area under the P-R curve (all-point by default).

    See ``precision_recall_curve`` for ``num_positives`` and
    ``interpolated_average_precision`` for the interpolation. scikit-learn's
    ``average_precision_score`` is the non-interpolated step sum
    Σ (R_n - R_{n-1}) P_n; both agree whenever precision never rises with
    recall. ``nan`` when there is no positive.
    """
    if num_positives is None:
        num_positives = int(np.count_nonzero(_vector(y_true, "y_true")))
    if not num_positives:
        return float("nan")
    precision_values, recall_values, _ = precision_recall_curve(y_true, scores, num_positives)
    return interpolated_average_precision(precision_values, recall_values, recall_points)


def roc_curve(y_true, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates when accepting ``score >= t``.

    Returns ``(fpr, tpr, thresholds)`` starting at threshold ``+inf`` (nothing
    accepted: 0, 0) then one point per distinct score, from the highest down, as
    ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``; ``y_true`` is
    1 (or True) for positives and 0 for negatives. For face
    verification FPR is the FAR and TPR the TAR; pass ``-distances`` as scores.
    """
    true_positives, false_positives, thresholds = _ranked_counts(y_true, scores)
    total_positives = true_positives[-1] if true_positives.size else 0
    total_negatives = false_positives[-1] if false_positives.size else 0
    if not total_positives or not total_negatives:
        raise ValueError("a ROC curve needs both positive and negative examples")
    fpr = np.concatenate([[0.0], false_positives / total_negatives])
    tpr = np.concatenate([[0.0], true_positives / total_positives])
    return fpr, tpr, np.concatenate([[np.inf], thresholds])


# --- face verification --------------------------------------------------------


class TarAtFar(NamedTuple):
    """Result of ``tar_at_far``: the accept rate and the threshold that gave it."""

    tar: float
    threshold: float
    far: float
    """The false accept rate actually reached (at most the requested one)."""
    impostors_accepted: int


def tar_at_far(genuine, impostor, far: float, higher_is_better: bool = False) -> TarAtFar:
    """True accept rate at the strictest threshold whose false accept rate is <= ``far``.

    For distances (``higher_is_better=False``): sort the impostor distances
    ascending, take ``k = floor(far * n_impostor)`` and the threshold
    ``t = sorted_impostors[k]`` (the k-th smallest, counting from 0; ``+inf``
    when ``k = n``), and accept a pair if ``distance < t``. At most ``k``
    impostors are accepted (fewer on ties), so the FAR reached never exceeds the
    requested one. TAR is the fraction of genuine distances below ``t``.
    For similarity scores (``higher_is_better=True``) the same holds with the
    order reversed: ``t`` is the k-th largest impostor score and a pair is
    accepted if ``score > t``. This is the rule of the dlib oracle figures in
    ``reference/dlib_oracle/README.md``.
    """
    genuine = _vector(genuine, "genuine").astype(np.float64)
    impostor = _vector(impostor, "impostor").astype(np.float64)
    if not genuine.size or not impostor.size:
        raise ValueError("tar_at_far needs at least one genuine and one impostor value")
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be between 0 and 1, got {far}")
    sign = -1.0 if higher_is_better else 1.0  # work on distances: lower accepts
    distances = np.sort(sign * impostor)
    accepted_impostors = int(np.floor(far * distances.size + 1e-9))  # 1e-9: 0.29*100 is 29
    threshold = distances[accepted_impostors] if accepted_impostors < distances.size else np.inf
    impostors_accepted = int(np.count_nonzero(distances < threshold))
    return TarAtFar(
        tar=float(np.mean(sign * genuine < threshold)),
        threshold=float(sign * threshold),
        far=impostors_accepted / distances.size,
        impostors_accepted=impostors_accepted,
    )


def eer(genuine, impostor, higher_is_better: bool = False) -> float:
    """Equal error rate: the rate where false accepts equal false rejects.

    FAR and FRR = 1 - TAR are taken along the ROC curve (accept ``distance <= t``
    or ``score >= t``); the EER is where the two cross, linearly interpolated
    between the two ROC points that bracket the crossing.
    """
    genuine = _vector(genuine, "genuine").astype(np.float64)
    impostor = _vector(impostor, "impostor").astype(np.float64)
    scores = np.concatenate([genuine, impostor])
    labels = np.concatenate([np.ones(genuine.size, bool), np.zeros(impostor.size, bool)])
    false_accepts, true_accepts, _ = roc_curve(labels, scores if higher_is_better else -scores)
    gap = false_accepts - (1.0 - true_accepts)  # starts at -1, ends at +1
    after = int(np.argmax(gap >= 0))
    before = after - 1
    weight = gap[before] / (gap[before] - gap[after])
    return float(false_accepts[before] + weight * (false_accepts[after] - false_accepts[before]))


def roc_auc(y_true, scores) -> float:
    """Area under the ROC curve of ``roc_curve`` (trapezoids through all its points).

    The probability that a random positive scores above a random negative, ties
    counting one half; equal to ``sklearn.metrics.roc_auc_score``. For distances
    pass ``-distances``.
    """
    false_positive_rate, true_positive_rate, _ = roc_curve(y_true, scores)
    widths = np.diff(false_positive_rate)
    return float(np.sum(widths * (true_positive_rate[1:] + true_positive_rate[:-1]) / 2))


class ThresholdAccuracy(NamedTuple):
    """Result of ``best_threshold_accuracy``."""

    accuracy: float
    threshold: float


def _as_distances(genuine, impostor, higher_is_better: bool) -> tuple[np.ndarray, np.ndarray]:
    sign = -1.0 if higher_is_better else 1.0
    genuine = sign * _vector(genuine, "genuine").astype(np.float64)
    impostor = sign * _vector(impostor, "impostor").astype(np.float64)
    if not genuine.size or not impostor.size:
        raise ValueError("need at least one genuine and one impostor value")
    return genuine, impostor


def best_threshold_accuracy(genuine, impostor, higher_is_better: bool = False) -> ThresholdAccuracy:
    """The highest accuracy of the rule "same person if distance < t" over every ``t``.

    Accuracy counts genuine pairs accepted plus impostor pairs rejected, over all
    pairs. Only cuts between distinct values are possible (tied pairs fall on the
    same side); the threshold returned is the midpoint between the last accepted
    and the first rejected value (just above the largest value when all are
    accepted, the smallest value when none is), the smallest such cut on ties of
    accuracy. For similarity scores (``higher_is_better=True``) the rule is
    ``score > t`` and the threshold is returned as a score.
    """
    genuine, impostor = _as_distances(genuine, impostor, higher_is_better)
    values = np.concatenate([genuine, impostor])
    is_genuine = np.concatenate([np.ones(genuine.size, bool), np.zeros(impostor.size, bool)])
    order = np.argsort(values, kind="stable")
    values, is_genuine = values[order], is_genuine[order]
    last_of_each_value = np.flatnonzero(np.diff(values, append=np.inf))
    accepted_genuine = np.cumsum(is_genuine)[last_of_each_value]
    accepted_impostor = np.cumsum(~is_genuine)[last_of_each_value]
    correct = np.concatenate(
        [[impostor.size], accepted_genuine + impostor.size - accepted_impostor]
    )
    best = int(np.argmax(correct))  # 0: accept nothing; k: accept the k smallest distinct values
    distinct = values[last_of_each_value]
    if best == 0:
        threshold = distinct[0]
    elif best == distinct.size:
        threshold = np.nextafter(distinct[-1], np.inf)
    else:
        threshold = (distinct[best - 1] + distinct[best]) / 2
    sign = -1.0 if higher_is_better else 1.0
    return ThresholdAccuracy(float(correct[best] / values.size), float(sign * threshold))


class CrossValidatedAccuracy(NamedTuple):
    """Result of ``cross_validated_accuracy``: one accuracy and threshold per fold."""

    mean: float
    std: float
    accuracies: np.ndarray
    thresholds: np.ndarray


def cross_validated_accuracy(
    genuine,
    impostor,
    folds: int = 10,
    seed: int | None = 0,
    higher_is_better: bool = False,
) -> CrossValidatedAccuracy:
    """k-fold verification accuracy, the LFW protocol: each fold is scored at the
    threshold that is best (``best_threshold_accuracy``) on the other folds.

    Folds are stratified as LFW's are: the genuine values are dealt into ``folds``
    near-equal folds, and so are the impostor values, each after a shuffle with
    ``numpy.random.default_rng(seed)`` (``seed=None``: in the order given, as
    consecutive blocks). ``std`` is the population standard deviation over the folds.
    """
    genuine, impostor = _as_distances(genuine, impostor, higher_is_better)
    if folds < 2:
        raise ValueError(f"need at least 2 folds, got {folds}")
    if min(genuine.size, impostor.size) < folds:
        raise ValueError(
            f"{genuine.size} genuine and {impostor.size} impostor pairs cannot make {folds} folds"
        )
    rng = None if seed is None else np.random.default_rng(seed)

    def fold_of(count: int) -> np.ndarray:
        order = np.arange(count) if rng is None else rng.permutation(count)
        assignment = np.empty(count, np.int64)
        for fold, members in enumerate(np.array_split(order, folds)):
            assignment[members] = fold
        return assignment

    genuine_fold, impostor_fold = fold_of(genuine.size), fold_of(impostor.size)
    accuracies, thresholds = [], []
    for fold in range(folds):
        fit = best_threshold_accuracy(
            genuine[genuine_fold != fold], impostor[impostor_fold != fold]
        )
        tested_genuine = genuine[genuine_fold == fold]
        tested_impostor = impostor[impostor_fold == fold]
        correct = np.sum(tested_genuine < fit.threshold) + np.sum(tested_impostor >= fit.threshold)
        accuracies.append(correct / (tested_genuine.size + tested_impostor.size))
        thresholds.append(fit.threshold)
    sign = -1.0 if higher_is_better else 1.0
    accuracies = np.array(accuracies, dtype=np.float64)
    return CrossValidatedAccuracy(
        float(accuracies.mean()), float(accuracies.std()), accuracies, sign * np.array(thresholds)
    )


def binomial_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Clopper-Pearson (exact) confidence interval of a rate seen as ``successes / trials``.

    For a false accept rate measured on ``trials`` impostor pairs of which
    ``successes`` were accepted: with 0 of 3,000 the upper end is about 1.2e-3
    (the "rule of three", 3 / n, at 95 %), so a FAR of 1e-3 cannot be claimed.
    """
    from scipy.stats import beta

    if trials <= 0 or not 0 <= successes <= trials:
        raise ValueError(f"need 0 <= successes <= trials and trials > 0, got {successes}/{trials}")
    tail = (1.0 - confidence) / 2
    low = 0.0 if successes == 0 else float(beta.ppf(tail, successes, trials - successes + 1))
    high = (
        1.0 if successes == trials else float(beta.ppf(1 - tail, successes + 1, trials - successes))
    )
    return low, high


def threshold_interval(
    impostor, far: float, confidence: float = 0.95, higher_is_better: bool = False
) -> tuple[float, float]:
    """Where the threshold of a true false accept rate ``far`` lies, with ``confidence``.

    Distribution-free: the k-th smallest of n impostor distances is below the
    population's ``far`` quantile exactly when at least k of them are, so ranks
    taken from the Binomial(n, far) quantiles bracket the quantile. Returns the
    impostor values at those ranks (``-inf`` / ``+inf`` when a rank falls outside
    the sample: too few impostor pairs to bound that side). The span shows how
    much the recommended threshold would move with another sample of impostors.
    """
    from scipy.stats import binom

    sign = -1.0 if higher_is_better else 1.0
    distances = np.sort(sign * _vector(impostor, "impostor").astype(np.float64))
    if not distances.size:
        raise ValueError("need at least one impostor value")
    tail = (1.0 - confidence) / 2
    low_rank = int(binom.ppf(tail, distances.size, far)) - 1
    high_rank = int(binom.ppf(1 - tail, distances.size, far))
    low = distances[low_rank] if low_rank >= 0 else -np.inf
    high = distances[high_rank] if high_rank < distances.size else np.inf
    ends = sorted([float(sign * low), float(sign * high)])
    return ends[0], ends[1]


# --- object detection --------------------------------------------------------


class Detections(NamedTuple):
    """One image's predictions: boxes ``(N, 4)`` xyxy, scores ``(N,)``, classes ``(N,)``."""

    boxes: np.ndarray
    scores: np.ndarray
    classes: np.ndarray


class GroundTruth(NamedTuple):
    """One image's labelled objects: boxes ``(M, 4)`` xyxy and classes ``(M,)``."""

    boxes: np.ndarray
    classes: np.ndarray


def _same_class_iou(pred_boxes, pred_classes, gt_boxes, gt_classes) -> np.ndarray:
    """IoU between predictions and ground truth, -1 where the classes differ."""
    pred_classes = _vector(pred_classes, "pred_classes")
    gt_classes = _vector(gt_classes, "gt_classes")
    overlaps = iou(pred_boxes, gt_boxes)
    if overlaps.shape != (pred_classes.size, gt_classes.size):
        raise ValueError(
            f"got {overlaps.shape[0]} predicted boxes with {pred_classes.size} classes and "
            f"{overlaps.shape[1]} ground-truth boxes with {gt_classes.size} classes"
        )
    return np.where(pred_classes[:, None] == gt_classes[None, :], overlaps, -1.0)


def _greedy_match(overlaps: np.ndarray, order: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Match predictions in ``order`` to the best still-free ground truth."""
    matched_gt = np.full(overlaps.shape[0], -1, dtype=np.int64)
    if not overlaps.shape[1]:
        return matched_gt
    free = np.ones(overlaps.shape[1], dtype=bool)
    for prediction in order:
        candidates = np.where(free, overlaps[prediction], -1.0)
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            matched_gt[prediction] = best
            free[best] = False
    return matched_gt


def match_detections(
    pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes, iou_threshold: float = 0.5
) -> np.ndarray:
    """Which ground-truth box each prediction of one image found (-1: none, a false positive).

    Predictions are taken from the highest score down (ties in input order);
    each takes the still-unmatched ground-truth box of its own class with the
    highest IoU, provided that IoU is >= ``iou_threshold``. Every ground-truth
    box is matched at most once, so a duplicate detection is a false positive.
    This is the COCO rule; PASCAL VOC differs only in giving up when the best
    box is already taken instead of trying the next one.
    """
    scores = _vector(pred_scores, "pred_scores").astype(np.float64)
    overlaps = _same_class_iou(pred_boxes, pred_classes, gt_boxes, gt_classes)
    if scores.size != overlaps.shape[0]:
        raise ValueError(f"got {overlaps.shape[0]} predicted boxes but {scores.size} scores")
    return _greedy_match(overlaps, np.argsort(-scores, kind="stable"), iou_threshold)


@dataclass(frozen=True)
class MeanAveragePrecision:
    """mAP of a detector over a data set, with the per-class, per-threshold table behind it.

    ``ap[c, t]`` is the AP of class ``c`` at IoU threshold ``iou_thresholds[t]``,
    ``nan`` for a class without ground truth. ``map`` averages ``ap`` over the
    classes that have ground truth and over the thresholds.
    """

    map: float
    ap: np.ndarray
    iou_thresholds: np.ndarray
    num_ground_truth: np.ndarray

    @property
    def per_class(self) -> np.ndarray:
        """AP of each class averaged over the IoU thresholds (``nan``: no ground truth)."""
        return self.ap.mean(axis=1)

    @property
    def per_threshold(self) -> np.ndarray:
        """mAP at each IoU threshold, e.g. mAP@0.5 and mAP@0.75 of COCO."""
        if not np.count_nonzero(self.num_ground_truth):
            return np.full(self.iou_thresholds.size, np.nan)
        return np.nanmean(self.ap, axis=0)


def mean_average_precision(
    predictions: Sequence[Detections | tuple],
    ground_truth: Sequence[GroundTruth | tuple],
    iou_thresholds: float | Sequence[float] = 0.5,
    num_classes: int | None = None,
    recall_points: int | None = None,
) -> MeanAveragePrecision:
    """Mean average precision over classes (and IoU thresholds) of a set of images.

    ``predictions[i]`` is ``(boxes, scores, classes)`` and ``ground_truth[i]`` is
    ``(boxes, classes)`` for image ``i``; boxes are xyxy pixels. At each IoU
    threshold, predictions are matched per image with ``match_detections``;
    then, per class, all images' predictions are ranked by score and AP is the
    interpolated area under their P-R curve, with recall over all ground-truth
    boxes of that class (``average_precision``, all-point by default as in
    Darknet's ``detector map``; use ``recall_points=101`` for COCO's sampling).
    Classes without ground truth are left out of the mean; their predictions
    count nowhere. Every prediction given counts: cap them per image upstream
    (``shared.boxes.nms(..., max_det=100)`` is COCO's limit).
    ``iou_thresholds=0.5`` gives PASCAL VOC's mAP@0.5 and
    ``COCO_IOU_THRESHOLDS`` COCO's mAP@[.5:.95].
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(
            f"got predictions for {len(predictions)} images but ground truth for "
            f"{len(ground_truth)}"
        )
    thresholds = np.atleast_1d(np.asarray(iou_thresholds, dtype=np.float64))
    images = [
        (Detections(*map(np.asarray, detections)), GroundTruth(*map(np.asarray, truth)))
        for detections, truth in zip(predictions, ground_truth, strict=True)
    ]
    if num_classes is None:
        labels_seen = [
            array.max(initial=-1)
            for detections, truth in images
            for array in (detections.classes.reshape(-1), truth.classes.reshape(-1))
        ]
        num_classes = int(max(labels_seen, default=-1)) + 1

    pred_classes, pred_scores, pred_matched = [], [], []
    for detections, truth in images:
        overlaps = _same_class_iou(detections.boxes, detections.classes, truth.boxes, truth.classes)
        scores = detections.scores.reshape(-1).astype(np.float64)
        order = np.argsort(-scores, kind="stable")
        pred_classes.append(detections.classes.reshape(-1))
        pred_scores.append(scores)
        pred_matched.append(
            np.stack([_greedy_match(overlaps, order, threshold) >= 0 for threshold in thresholds])
        )
    all_classes = np.concatenate(pred_classes) if images else np.zeros(0)
    all_scores = np.concatenate(pred_scores) if images else np.zeros(0)
    all_matched = (
        np.concatenate(pred_matched, axis=1) if images else np.zeros((thresholds.size, 0), bool)
    )
    gt_classes = np.concatenate([truth.classes.reshape(-1) for _, truth in images] or [[]])
    gt_classes = gt_classes.astype(np.int64)
    if gt_classes.size and (gt_classes.min() < 0 or gt_classes.max() >= num_classes):
        raise ValueError(f"ground-truth classes must lie in 0..{num_classes - 1}")
    num_ground_truth = np.bincount(gt_classes, minlength=num_classes)

    ap = np.full((num_classes, thresholds.size), np.nan)
    for label in np.flatnonzero(num_ground_truth):
        of_class = all_classes == label
        for index in range(thresholds.size):
            ap[label, index] = average_precision(
                all_matched[index, of_class],
                all_scores[of_class],
                num_positives=int(num_ground_truth[label]),
                recall_points=recall_points,
            )
    with_truth = num_ground_truth > 0
    overall = float(ap[with_truth].mean()) if with_truth.any() else float("nan")
    return MeanAveragePrecision(overall, ap, thresholds, num_ground_truth)


# --- multi-object tracking ------------------------------------------------------

HOTA_ALPHAS = np.arange(1, 20) * 0.05
"""Localisation thresholds 0.05, 0.10, ..., 0.95 over which HOTA is averaged (as TrackEval)."""


class TrackedBoxes(NamedTuple):
    """Boxes with identities over a sequence, one row per (frame, object): the rows of a
    MOTChallenge ``gt.txt``. ``frames`` ``(N,)`` and ``ids`` ``(N,)`` are integers, ``boxes``
    ``(N, 4)`` xyxy pixels; an id appears at most once per frame."""

    frames: np.ndarray
    ids: np.ndarray
    boxes: np.ndarray


@dataclass(frozen=True)
class TrackingMetrics:
    """CLEAR-MOT, identity and HOTA scores of a tracker on one or more sequences.

    Counts are over (frame, object) rows: ``num_truth`` ground-truth boxes, ``num_predicted``
    tracker boxes, of which ``matches`` were paired and ``misses`` / ``false_positives`` were
    not; ``id_switches`` counts a ground-truth object paired with another track id than the
    last one it was paired with.
    """

    num_frames: int
    num_truth: int
    num_predicted: int
    matches: int
    misses: int
    false_positives: int
    id_switches: int
    mota: float
    motp: float
    idf1: float
    idp: float
    idr: float
    hota: float
    deta: float
    assa: float

    def to_dict(self) -> dict:
        return {
            name: round(value, 4) if isinstance(value, float) else value
            for name, value in self.__dict__.items()
        }


def _tracked(rows: TrackedBoxes | tuple, name: str) -> TrackedBoxes:
    frames, ids, boxes = (np.asarray(array) for array in rows)
    frames = _vector(frames, f"{name}.frames").astype(np.int64)
    ids = _vector(ids, f"{name}.ids").astype(np.int64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not frames.size == ids.size == boxes.shape[0]:
        raise ValueError(
            f"{name}: {frames.size} frames, {ids.size} ids and {boxes.shape[0]} boxes differ"
        )
    pairs = np.stack([frames, ids], axis=1)
    if np.unique(pairs, axis=0).shape[0] != pairs.shape[0]:
        raise ValueError(f"{name}: an id appears twice in one frame")
    return TrackedBoxes(frames, ids, boxes)


def _per_frame(
    rows: TrackedBoxes, frame_numbers: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(ids, boxes)`` of each frame in ``frame_numbers`` (empty where a frame has none)."""
    order = np.argsort(rows.frames, kind="stable")
    frames, ids, boxes = rows.frames[order], rows.ids[order], rows.boxes[order]
    starts = np.searchsorted(frames, frame_numbers, side="left")
    ends = np.searchsorted(frames, frame_numbers, side="right")
    return [(ids[s:e], boxes[s:e]) for s, e in zip(starts, ends, strict=True)]


def _most_pairs(overlap: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The most ``valid`` pairs, and among those the largest IoU sum (py-motmetrics' rule)."""
    if not valid.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    # A valid pair outweighs any sum of IoUs (each <= 1) over the other pairs.
    bonus = float(min(valid.shape)) + 1.0
    rows, cols = linear_sum_assignment(np.where(valid, overlap + bonus, 0.0), maximize=True)
    keep = valid[rows, cols]
    return rows[keep], cols[keep]


def tracking_metrics(
    truth: TrackedBoxes | tuple, predicted: TrackedBoxes | tuple, iou_threshold: float = 0.5
) -> TrackingMetrics:
    """Score tracker output against ground truth (boxes xyxy, a pair matches at IoU >= threshold).

    - CLEAR MOT (Bernardin & Stiefelhagen 2008, as py-motmetrics computes it): frame by
      frame, a ground-truth object keeps the track it was paired with in the previous frame
      while their IoU stays >= ``iou_threshold``; the remaining objects and tracks are paired
      by the Hungarian algorithm on IoU. ``MOTA = 1 - (misses + false positives + id
      switches) / num_truth`` (it can be negative); ``MOTP`` is the mean IoU of the pairs
      (higher is better, unlike motmetrics' mean distance 1 - IoU).
    - Identity (Ristani et al. 2016): the one-to-one pairing of ground-truth and predicted
      trajectories that maximises the number of frames in which they match (IDTP);
      ``IDF1 = 2 IDTP / (num_truth + num_predicted)``, ``IDP = IDTP / num_predicted``,
      ``IDR = IDTP / num_truth``.
    - HOTA (Luiten et al. 2021, as TrackEval computes it): ``sqrt(DetA * AssA)`` averaged
      over the localisation thresholds ``HOTA_ALPHAS``; ``iou_threshold`` plays no part.

    Frames are the union of those present in either input. Ratios over nothing are 0.0.
    """
    truth = _tracked(truth, "truth")
    predicted = _tracked(predicted, "predicted")
    frame_numbers = np.union1d(truth.frames, predicted.frames)
    truth_frames = _per_frame(truth, frame_numbers)
    predicted_frames = _per_frame(predicted, frame_numbers)
    truth_ids, predicted_ids = np.unique(truth.ids), np.unique(predicted.ids)
    overlaps = [
        iou(truth_boxes, predicted_boxes)
        for (_, truth_boxes), (_, predicted_boxes) in zip(
            truth_frames, predicted_frames, strict=True
        )
    ]
    # Per frame, ids as indices into truth_ids / predicted_ids.
    truth_columns = [np.searchsorted(truth_ids, ids) for ids, _ in truth_frames]
    predicted_columns = [np.searchsorted(predicted_ids, ids) for ids, _ in predicted_frames]

    # CLEAR MOT.
    last_partner: dict[int, int] = {}
    matches = id_switches = 0
    iou_sum = 0.0
    # Identity: frames in which each (truth, predicted) trajectory pair matches.
    together = np.zeros((truth_ids.size, predicted_ids.size))
    for overlap, gt_cols, pr_cols in zip(overlaps, truth_columns, predicted_columns, strict=True):
        valid = overlap >= iou_threshold
        together[np.ix_(gt_cols, pr_cols)] += valid
        free = valid.copy()
        pairs = []
        for row, gt in enumerate(gt_cols):
            partner = last_partner.get(int(gt))
            kept = np.flatnonzero((pr_cols == partner) & free[row])
            if kept.size:
                pairs.append((row, int(kept[0])))
                free[row, :] = False
                free[:, kept[0]] = False
        rows, cols = _most_pairs(overlap, free)
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            previous = last_partner.get(int(gt_cols[row]))
            id_switches += previous is not None and previous != pr_cols[col]
            pairs.append((row, col))
        for row, col in pairs:
            last_partner[int(gt_cols[row])] = int(pr_cols[col])
            iou_sum += overlap[row, col]
        matches += len(pairs)
    num_truth, num_predicted = truth.frames.size, predicted.frames.size
    misses, false_positives = num_truth - matches, num_predicted - matches

    identity_rows, identity_cols = linear_sum_assignment(together, maximize=True)
    idtp = float(together[identity_rows, identity_cols].sum())

    hota, deta, assa = _hota(
        overlaps, truth_columns, predicted_columns, truth_ids.size, predicted_ids.size
    )
    return TrackingMetrics(
        num_frames=int(frame_numbers.size),
        num_truth=int(num_truth),
        num_predicted=int(num_predicted),
        matches=int(matches),
        misses=int(misses),
        false_positives=int(false_positives),
        id_switches=int(id_switches),
        mota=1.0 - _ratio(misses + false_positives + id_switches, num_truth),
        motp=_ratio(iou_sum, matches),
        idf1=_ratio(2 * idtp, num_truth + num_predicted),
        idp=_ratio(idtp, num_predicted),
        idr=_ratio(idtp, num_truth),
        hota=hota,
        deta=deta,
        assa=assa,
    )


def _hota(
    overlaps: list[np.ndarray],
    truth_columns: list[np.ndarray],
    predicted_columns: list[np.ndarray],
    num_truth_ids: int,
    num_predicted_ids: int,
) -> tuple[float, float, float]:
    """HOTA, DetA and AssA averaged over ``HOTA_ALPHAS`` (TrackEval's ``HOTA.eval_sequence``)."""
    truth_count = np.zeros(num_truth_ids)
    predicted_count = np.zeros(num_predicted_ids)
    # Global alignment: how much each trajectory pair overlaps, frame IoUs normalised so a
    # box shared between several partners counts once.
    potential = np.zeros((num_truth_ids, num_predicted_ids))
    for overlap, gt_cols, pr_cols in zip(overlaps, truth_columns, predicted_columns, strict=True):
        truth_count[gt_cols] += 1
        predicted_count[pr_cols] += 1
        denominator = overlap.sum(axis=1, keepdims=True) + overlap.sum(axis=0) - overlap
        share = np.divide(overlap, denominator, out=np.zeros_like(overlap), where=denominator > 0)
        potential[np.ix_(gt_cols, pr_cols)] += share
    alignment = potential / (truth_count[:, None] + predicted_count[None, :] - potential)

    eps = np.finfo(np.float64).eps
    true_pos = np.zeros(HOTA_ALPHAS.size)
    matched = np.zeros((HOTA_ALPHAS.size, num_truth_ids, num_predicted_ids))
    for overlap, gt_cols, pr_cols in zip(overlaps, truth_columns, predicted_columns, strict=True):
        score = alignment[np.ix_(gt_cols, pr_cols)] * overlap
        rows, cols = linear_sum_assignment(score, maximize=True)
        keep = score[rows, cols] > eps
        rows, cols = rows[keep], cols[keep]
        for index, alpha in enumerate(HOTA_ALPHAS):
            hit = overlap[rows, cols] >= alpha - eps
            true_pos[index] += np.count_nonzero(hit)
            matched[index, gt_cols[rows[hit]], pr_cols[cols[hit]]] += 1
    total_truth, total_predicted = truth_count.sum(), predicted_count.sum()
    deta = np.array(
        [_ratio(tp, total_truth + total_predicted - tp) for tp in true_pos], dtype=np.float64
    )
    assa = np.zeros(HOTA_ALPHAS.size)
    for index in range(HOTA_ALPHAS.size):
        pair = matched[index]
        union = truth_count[:, None] + predicted_count[None, :] - pair
        association = np.divide(pair, union, out=np.zeros_like(pair), where=union > 0)
        assa[index] = _ratio((pair * association).sum(), true_pos[index])
    hota = np.sqrt(deta * assa)
    return float(hota.mean()), float(deta.mean()), float(assa.mean())
