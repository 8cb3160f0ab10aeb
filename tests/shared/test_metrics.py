"""Metrics: hand-worked cases, scikit-learn as an oracle, and dlib's own TAR@FAR figures."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from sklearn import metrics as skm

from shared.metrics import (
    COCO_IOU_THRESHOLDS,
    Detections,
    GroundTruth,
    accuracy,
    average_precision,
    best_threshold_accuracy,
    binomial_interval,
    confusion_matrix,
    cross_validated_accuracy,
    eer,
    f1,
    interpolated_average_precision,
    match_detections,
    mean_average_precision,
    precision,
    precision_recall_curve,
    recall,
    roc_auc,
    roc_curve,
    tar_at_far,
    threshold_interval,
)

# --- classification ---------------------------------------------------------------


def test_binary_metrics_by_hand():
    # TP: items 0, 1; FP: item 4; FN: items 2, 3; TN: item 5.
    y_true = [1, 1, 1, 1, 0, 0]
    y_pred = [1, 1, 0, 0, 1, 0]
    assert accuracy(y_true, y_pred) == pytest.approx(3 / 6)
    assert precision(y_true, y_pred) == pytest.approx(2 / 3)
    assert recall(y_true, y_pred) == pytest.approx(2 / 4)
    assert f1(y_true, y_pred) == pytest.approx(2 * 2 / (2 * 2 + 1 + 2))
    # The other class as the positive one: TP 1 (item 5), FP 2, FN 1.
    assert precision(y_true, y_pred, positive_label=0) == pytest.approx(1 / 3)
    assert recall(y_true, y_pred, positive_label=0) == pytest.approx(1 / 2)


def test_zero_denominators_give_zero():
    assert precision([1, 0], [0, 0]) == 0.0  # nothing predicted positive
    assert recall([0, 0], [1, 0]) == 0.0  # nothing to find
    assert f1([0, 0], [0, 0]) == 0.0
    assert accuracy([], []) == 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_binary_metrics_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    y_true = rng.integers(0, 2, 200)
    y_pred = np.where(rng.uniform(size=200) < 0.7, y_true, 1 - y_true)
    assert accuracy(y_true, y_pred) == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert precision(y_true, y_pred) == pytest.approx(skm.precision_score(y_true, y_pred))
    assert recall(y_true, y_pred) == pytest.approx(skm.recall_score(y_true, y_pred))
    assert f1(y_true, y_pred) == pytest.approx(skm.f1_score(y_true, y_pred))
    # Strings and column vectors work the same.
    names = np.array(["denied", "granted"])
    assert precision(names[y_true], names[y_pred][:, None], "granted") == pytest.approx(
        skm.precision_score(y_true, y_pred)
    )


def test_confusion_matrix_by_hand_and_against_sklearn():
    y_true = [0, 0, 1, 2, 2, 2]
    y_pred = [0, 1, 1, 2, 0, 2]
    expected = np.array([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    np.testing.assert_array_equal(confusion_matrix(y_true, y_pred), expected)
    # A class that never occurs still gets its row and column.
    assert confusion_matrix(y_true, y_pred, num_classes=5).shape == (5, 5)

    rng = np.random.default_rng(3)
    y_true, y_pred = rng.integers(0, 5, 300), rng.integers(0, 5, 300)
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, 5), skm.confusion_matrix(y_true, y_pred, labels=range(5))
    )
    with pytest.raises(ValueError, match=r"outside 0\.\.2"):
        confusion_matrix([0, 3], [0, 1], num_classes=3)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="y_true has 2 values but y_pred has 3"):
        accuracy([0, 1], [0, 1, 1])


# --- P-R curve and AP ----------------------------------------------------------------

# Five detections ranked by score against 4 ground-truth objects (one never detected):
#
#   rank  score  match  TP  FP  precision  recall  envelope (best precision at >= recall)
#    1    0.9    TP     1   0   1/1        1/4     1
#    2    0.8    FP     1   1   1/2        1/4     0.6
#    3    0.7    FP     1   2   1/3        1/4     0.6
#    4    0.6    TP     2   2   2/4        2/4     0.6
#    5    0.5    TP     3   2   3/5        3/4     0.6
#
# All-point AP = sum of recall steps x envelope = 1/4 * 1 + 1/4 * 0.6 + 1/4 * 0.6 = 0.55.
# scikit-learn's step sum uses the raw precision instead: 1/4 * 1 + 1/4 * 1/2 + 1/4 * 3/5
# = 0.525, so the two differ here (the precision rises from rank 3 to rank 5).
# 11-point (VOC 2007): recalls 0, .1, .2 -> 1; .3 .. .7 -> 0.6; .8, .9, 1 -> 0
#   = (3 * 1 + 5 * 0.6) / 11 = 6 / 11.
# 101-point (COCO): recalls 0 .. .25 (26 points) -> 1; .26 .. .75 (50 points) -> 0.6; the
#   25 points above .75 -> 0: (26 + 30) / 101 = 56 / 101.
FIVE_LABELS = np.array([1, 0, 0, 1, 1])
FIVE_SCORES = np.array([0.9, 0.8, 0.7, 0.6, 0.5])


def test_precision_recall_curve_by_hand():
    precision_values, recall_values, thresholds = precision_recall_curve(
        FIVE_LABELS, FIVE_SCORES, num_positives=4
    )
    np.testing.assert_allclose(precision_values, [1, 1 / 2, 1 / 3, 2 / 4, 3 / 5])
    np.testing.assert_allclose(recall_values, [1 / 4, 1 / 4, 1 / 4, 2 / 4, 3 / 4])
    np.testing.assert_array_equal(thresholds, FIVE_SCORES)


def test_average_precision_by_hand():
    assert average_precision(FIVE_LABELS, FIVE_SCORES, num_positives=4) == pytest.approx(0.55)
    assert average_precision(
        FIVE_LABELS, FIVE_SCORES, num_positives=4, recall_points=11
    ) == pytest.approx(6 / 11)
    assert average_precision(
        FIVE_LABELS, FIVE_SCORES, num_positives=4, recall_points=101
    ) == pytest.approx(56 / 101)
    # Given the labels only, the 3 positives are all found: steps of 1/3 instead.
    assert average_precision(FIVE_LABELS, FIVE_SCORES) == pytest.approx(1 / 3 + 2 / 3 * 0.6)
    assert np.isnan(average_precision([0, 0], [0.4, 0.3]))
    assert average_precision([0, 0], [0.4, 0.3], num_positives=2) == 0.0


def test_average_precision_equals_sklearn_when_precision_never_rises():
    # Here the envelope is the raw precision at every recall step, so the all-point
    # interpolated AP and scikit-learn's step sum are the same number:
    # ranks TP TP FP TP FP -> 1/3 * 1 + 1/3 * 1 + 1/3 * 3/4 = 0.9166...
    labels = np.array([1, 1, 0, 1, 0])
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    expected = skm.average_precision_score(labels, scores)
    assert expected == pytest.approx(11 / 12)
    assert average_precision(labels, scores) == pytest.approx(expected)
    # And on the five-detection case they differ, as worked out above.
    assert skm.average_precision_score(FIVE_LABELS, FIVE_SCORES) == pytest.approx(
        1 / 3 + 1 / 3 * 2 / 4 + 1 / 3 * 3 / 5
    )


def test_precision_recall_curve_agrees_with_sklearn_including_ties():
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 100)
    scores = np.round(rng.uniform(size=100) + 0.3 * labels, 1)  # many ties
    precision_values, recall_values, thresholds = precision_recall_curve(labels, scores)
    sk_precision, sk_recall, sk_thresholds = skm.precision_recall_curve(labels, scores)
    # scikit-learn orders by increasing threshold and appends the point (1, 0).
    np.testing.assert_allclose(precision_values, sk_precision[:-1][::-1])
    np.testing.assert_allclose(recall_values, sk_recall[:-1][::-1])
    np.testing.assert_allclose(thresholds, sk_thresholds[::-1])
    # Ties are accepted together: the result cannot depend on their order.
    shuffled = rng.permutation(100)
    assert average_precision(labels[shuffled], scores[shuffled]) == pytest.approx(
        average_precision(labels, scores)
    )


def test_envelope_area_of_a_curve_given_directly():
    # Precision 0.5 at recall 0.5, then 1.0 at recall 1.0: the envelope is 1 everywhere.
    assert interpolated_average_precision([0.5, 1.0], [0.5, 1.0]) == pytest.approx(1.0)
    assert interpolated_average_precision([], []) == 0.0


def test_roc_curve_agrees_with_sklearn():
    rng = np.random.default_rng(8)
    labels = rng.integers(0, 2, 150)
    scores = np.round(rng.normal(size=150) + labels, 1)
    for mine, theirs in zip(
        roc_curve(labels, scores),
        skm.roc_curve(labels, scores, drop_intermediate=False),
        strict=True,
    ):
        np.testing.assert_allclose(mine, theirs)
    with pytest.raises(ValueError, match="both positive and negative"):
        roc_curve([1, 1], [0.2, 0.3])


# --- verification: TAR@FAR and EER ------------------------------------------------


def test_tar_at_far_by_hand_for_distances_and_similarities():
    impostor = np.array([0.9, 0.5, 0.7, 0.3, 0.8, 1.0, 0.6, 1.1, 1.2, 0.4])  # sorted: .3 .4 .5 ...
    genuine = np.array([0.1, 0.2, 0.35, 0.45, 0.55])
    # FAR 0.2 of 10 impostors: k = 2, threshold = 3rd smallest = 0.5; accept d < 0.5.
    result = tar_at_far(genuine, impostor, far=0.2)
    assert result.threshold == 0.5 and result.impostors_accepted == 2 and result.far == 0.2
    assert result.tar == pytest.approx(4 / 5)
    # FAR 0.25 still gives k = floor(2.5) = 2; FAR 0 accepts below the smallest impostor.
    assert tar_at_far(genuine, impostor, far=0.25).threshold == 0.5
    zero = tar_at_far(genuine, impostor, far=0.0)
    assert zero.threshold == 0.3 and zero.tar == pytest.approx(2 / 5) and zero.far == 0.0
    # FAR 1 accepts everything.
    everything = tar_at_far(genuine, impostor, far=1.0)
    assert everything.tar == 1.0 and everything.far == 1.0
    # floor(0.3 * 10) must be 3 although 0.3 * 10 is 3.0000000000000004 or 2.9999...
    assert tar_at_far(genuine, impostor, far=0.3).threshold == 0.6
    # Similarities are the mirror image: same decisions on -distance.
    mirrored = tar_at_far(-genuine, -impostor, far=0.2, higher_is_better=True)
    assert mirrored.threshold == -0.5 and mirrored.tar == result.tar
    assert mirrored.impostors_accepted == 2


def test_tar_at_far_accepts_strictly_below_the_threshold_on_ties():
    # Impostors tie at the threshold: k = 1 gives threshold 0.5 and only 0.2 is accepted.
    result = tar_at_far([0.5, 0.4], [0.2, 0.5, 0.5, 0.5], far=0.25)
    assert result.threshold == 0.5 and result.impostors_accepted == 1 and result.tar == 0.5


def test_tar_at_far_rejects_bad_arguments():
    with pytest.raises(ValueError, match="between 0 and 1"):
        tar_at_far([0.1], [0.2], far=1.5)
    with pytest.raises(ValueError, match="at least one genuine"):
        tar_at_far([], [0.2], far=0.1)


def test_eer_by_hand():
    # Distances; sweeping the threshold, FAR and FRR meet at 1/4 (threshold between
    # 0.3 and 0.4 rejects genuine 0.6 only: FRR 1/4; at 0.4 one impostor of 4 gets in).
    assert eer([0.1, 0.2, 0.3, 0.6], [0.4, 0.5, 0.7, 0.8]) == pytest.approx(0.25)
    # Perfectly separated: 0. Same values as similarities: mirror image.
    assert eer([0.1, 0.2], [0.5, 0.6]) == pytest.approx(0.0)
    assert eer([0.9, 0.8], [0.1, 0.2], higher_is_better=True) == pytest.approx(0.0)
    # The crossing falls inside a vertical ROC step: FAR stays 1/3 while FRR drops
    # from 1/2 to 0, so the rates are equal at 1/3.
    assert eer([0.1, 0.2], [0.15, 0.3, 0.4]) == pytest.approx(1 / 3)


def test_eer_matches_the_interpolated_roc_crossing():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(11)
    genuine, impostor = rng.normal(1.0, 1.0, 300), rng.normal(-0.5, 1.0, 400)
    labels = np.r_[np.ones(300), np.zeros(400)]
    fpr, tpr, _ = skm.roc_curve(labels, np.r_[genuine, impostor])

    # The usual recipe: solve 1 - FAR = TAR(FAR) on the piecewise-linear ROC.
    def gap(x):
        return 1.0 - x - np.interp(x, fpr, tpr)

    expected = scipy_optimize.brentq(gap, 0.0, 1.0)
    assert eer(genuine, impostor, higher_is_better=True) == pytest.approx(expected, abs=1e-9)


def test_tar_at_far_reproduces_dlib_oracle_figures(reference_dir):
    """dlib's own TAR@FAR on AT&T, all 78,000 impostor pairs (reference/dlib_oracle)."""
    oracle = reference_dir / "dlib_oracle"
    with (oracle / "all_index.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["dataset"] == "att"]
    descriptors = np.load(oracle / "all_descriptors.npy")[[int(row["row"]) for row in rows]]
    identities = np.array([row["identity"] for row in rows])
    figures = json.loads((oracle / "figures.json").read_text())["att"]

    differences = descriptors[:, None, :].astype(np.float64) - descriptors[None, :, :]
    distances = np.sqrt(np.sum(differences**2, axis=-1))
    upper = np.triu_indices(len(rows), k=1)
    same = (identities[:, None] == identities[None, :])[upper]
    genuine, impostor = distances[upper][same], distances[upper][~same]
    assert impostor.size == figures["n_impostor_all"] == 78000

    for far in ("0.01", "0.001", "0.0001"):
        expected = figures[f"TAR@FAR={far}_all"]
        result = tar_at_far(genuine, impostor, far=float(far))
        assert result.tar == pytest.approx(expected["TAR"], abs=1e-12)
        assert result.threshold == pytest.approx(expected["thr"], abs=1e-6)
        assert result.impostors_accepted == expected["impostors_accepted"]
    assert np.mean(genuine < 0.6) == pytest.approx(figures["TAR_at_0_6"], abs=1e-12)


def test_roc_auc_by_hand_and_against_sklearn():
    # Positives 0.9, 0.4; negatives 0.5, 0.1: of the 4 (positive, negative) pairs 3 are
    # ordered right. A tie counts one half.
    assert roc_auc([1, 1, 0, 0], [0.9, 0.4, 0.5, 0.1]) == pytest.approx(0.75)
    assert roc_auc([1, 0], [0.5, 0.5]) == pytest.approx(0.5)
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, 2, 300)
    scores = np.round(rng.normal(y_true * 0.8, 1.0), 1)  # rounded: many ties
    assert roc_auc(y_true, scores) == pytest.approx(skm.roc_auc_score(y_true, scores))


def test_best_threshold_accuracy_by_hand():
    # Genuine 0.1, 0.3, 0.6; impostor 0.5, 0.7, 0.9. Cutting between 0.3 and 0.5 gets 5/6
    # right (0.6 is missed); between 0.6 and 0.7 also 5/6 (0.5 accepted): the smaller cut wins.
    result = best_threshold_accuracy([0.1, 0.3, 0.6], [0.5, 0.7, 0.9])
    assert result.accuracy == pytest.approx(5 / 6)
    assert result.threshold == pytest.approx(0.4)
    # Separable: every pair right, the cut halfway across the gap.
    assert best_threshold_accuracy([0.1, 0.2], [0.8]) == (1.0, pytest.approx(0.5))
    # Similarities: the same pairs negated give the same accuracy and the negated threshold.
    result = best_threshold_accuracy([-0.1, -0.3, -0.6], [-0.5, -0.7, -0.9], higher_is_better=True)
    assert result == (pytest.approx(5 / 6), pytest.approx(-0.4))
    # All genuine pairs beyond all impostors: accepting nothing is best (half right).
    result = best_threshold_accuracy([0.9, 0.8], [0.1, 0.2])
    assert result.accuracy == pytest.approx(0.5)
    assert np.mean(np.array([0.9, 0.8]) < result.threshold) == 0


def test_best_threshold_accuracy_matches_a_scan_of_every_cut():
    rng = np.random.default_rng(5)
    genuine = np.round(rng.normal(0.4, 0.1, 200), 2)  # rounded: ties across the classes
    impostor = np.round(rng.normal(0.7, 0.1, 300), 2)
    result = best_threshold_accuracy(genuine, impostor)
    cuts = np.unique(np.concatenate([genuine, impostor, [10.0]]))
    scan = [(np.sum(genuine < t) + np.sum(impostor >= t)) / 500 for t in cuts]
    assert result.accuracy == pytest.approx(max(scan))
    reached = (np.sum(genuine < result.threshold) + np.sum(impostor >= result.threshold)) / 500
    assert reached == pytest.approx(result.accuracy)


def test_cross_validated_accuracy_fits_each_fold_on_the_others():
    rng = np.random.default_rng(0)
    genuine, impostor = rng.normal(0.4, 0.1, 500), rng.normal(0.8, 0.1, 500)
    result = cross_validated_accuracy(genuine, impostor, folds=10, seed=0)
    assert len(result.accuracies) == len(result.thresholds) == 10
    assert result.mean == pytest.approx(result.accuracies.mean())
    # Two unit-variance-0.1 normals 0.4 apart: the best error is Phi(-2) = 2.3 %.
    assert 0.96 < result.mean < 0.99
    assert np.all(np.abs(result.thresholds - 0.6) < 0.05)
    # Each fold's threshold is fitted without that fold: the fold holding the genuine 0.9
    # and the impostor 0.05 (the last of each, in order) gets both wrong.
    genuine = np.array([0.1] * 9 + [0.9])
    impostor = np.array([0.95] * 9 + [0.05])
    result = cross_validated_accuracy(genuine, impostor, folds=10, seed=None)
    np.testing.assert_array_equal(result.accuracies, [1.0] * 9 + [0.0])
    # Stratified: each fold holds one genuine and one impostor value whatever the shuffle.
    assert cross_validated_accuracy(genuine, impostor, folds=10, seed=4).mean == 0.9
    with pytest.raises(ValueError, match="folds"):
        cross_validated_accuracy([0.1], [0.9], folds=10)


def test_binomial_interval_against_known_values():
    low, high = binomial_interval(0, 3000)
    assert low == 0 and high == pytest.approx(1 - 0.025 ** (1 / 3000), rel=1e-6)  # ~3.7/n
    low, high = binomial_interval(78, 78000)  # dlib's AT&T at FAR 1e-3
    assert low < 1e-3 < high and high < 1.3e-3
    assert binomial_interval(5, 5)[1] == 1.0
    with pytest.raises(ValueError):
        binomial_interval(3, 2)


def test_threshold_interval_covers_the_true_quantile():
    """On uniform impostor distances the true FAR-quantile is FAR itself; the 95 % interval
    from 5,000 values must hold it in about 95 of 100 samples (and be narrower with more)."""
    rng = np.random.default_rng(1)
    covered = 0
    for _ in range(100):
        low, high = threshold_interval(rng.uniform(size=5000), far=0.01)
        covered += low < 0.01 <= high
    assert 88 <= covered <= 100
    narrow = threshold_interval(rng.uniform(size=200_000), far=0.01)
    assert narrow[1] - narrow[0] < 0.002
    # Too few impostors to see a FAR of 1e-3: nothing bounds the threshold from below.
    low, high = threshold_interval(rng.uniform(size=100), far=1e-3)
    assert low == -np.inf and np.isfinite(high)


# --- detection: matching and mAP ---------------------------------------------------


def test_match_detections_greedy_by_score_each_truth_once():
    gt_boxes = np.array([[0, 0, 10, 10], [6, 0, 16, 10]], dtype=float)
    gt_classes = np.array([0, 0])
    pred_boxes = np.array(
        [
            [5, 0, 15, 10],  # low score: IoU 0.33 with gt 0, 0.82 with gt 1
            [0, 0, 10, 10],  # highest score: exact on gt 0
            [2, 0, 12, 10],  # duplicate of gt 0 (IoU 0.67), also 0.43 with gt 1
            [0, 0, 10, 10],  # exact on gt 0 but another class
        ],
        dtype=float,
    )
    scores = np.array([0.5, 0.9, 0.8, 0.95])
    classes = np.array([0, 0, 0, 1])
    # By score: pred 3 (class 1, nothing to match), pred 1 takes gt 0, pred 2's best free
    # truth is gt 1 at IoU 0.43 < 0.5, so it is a false positive; pred 0 then takes gt 1.
    matched = match_detections(pred_boxes, scores, classes, gt_boxes, gt_classes, 0.5)
    np.testing.assert_array_equal(matched, [1, 0, -1, -1])
    # At IoU 0.4 pred 2 falls back to gt 1 (COCO rule) and pred 0 is left without a match.
    matched = match_detections(pred_boxes, scores, classes, gt_boxes, gt_classes, 0.4)
    np.testing.assert_array_equal(matched, [-1, 0, 1, -1])
    # No ground truth, or no predictions.
    np.testing.assert_array_equal(
        match_detections(pred_boxes, scores, classes, np.zeros((0, 4)), [], 0.5), [-1] * 4
    )
    assert match_detections(np.zeros((0, 4)), [], [], gt_boxes, gt_classes).shape == (0,)


def _two_image_case():
    """Two classes with ground truth (0 and 1) and a class 2 that has none."""
    predictions = [
        Detections(
            boxes=np.array(
                [[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [50, 50, 60, 60]], float
            ),
            scores=np.array([0.9, 0.8, 0.7, 0.95]),
            classes=np.array([0, 0, 1, 1]),
        ),
        Detections(
            boxes=np.array([[0, 0, 10, 5], [40, 40, 50, 50], [0, 0, 10, 10]], float),
            scores=np.array([0.6, 0.85, 0.5]),
            classes=np.array([0, 1, 2]),
        ),
    ]
    ground_truth = [
        GroundTruth(np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float), np.array([0, 1])),
        GroundTruth(np.array([[0, 0, 10, 10], [40, 40, 50, 50]], float), np.array([0, 0])),
    ]
    return predictions, ground_truth


def test_mean_average_precision_two_classes_two_images_by_hand():
    # Class 0 has 3 truths. Ranked: 0.9 TP (exact), 0.8 FP (duplicate of the same truth),
    # 0.6 TP at IoU 0.5 exactly ([0,0,10,5] covers half of [0,0,10,10]).
    #   P: 1, 1/2, 2/3; R: 1/3, 1/3, 2/3 -> AP = 1/3 * 1 + 1/3 * 2/3 = 5/9.
    #   At IoU 0.75 the 0.6 box is a FP -> AP = 1/3.
    # Class 1 has 1 truth. Ranked: 0.95 FP (nothing there), 0.85 FP (a class-0 truth),
    # 0.7 TP -> P: 0, 0, 1/3; R: 0, 0, 1 -> AP = 1/3 at every threshold.
    # Class 2 has no truth: left out. mAP@0.5 = (5/9 + 1/3) / 2 = 4/9.
    predictions, ground_truth = _two_image_case()
    result = mean_average_precision(predictions, ground_truth, 0.5, num_classes=3)
    assert result.map == pytest.approx(4 / 9)
    np.testing.assert_allclose(result.per_class, [5 / 9, 1 / 3, np.nan])
    np.testing.assert_array_equal(result.num_ground_truth, [3, 1, 0])

    at_75 = mean_average_precision(predictions, ground_truth, [0.75])
    assert at_75.map == pytest.approx(1 / 3) and at_75.ap.shape == (3, 1)

    # COCO range: class 0 is 5/9 at 0.50 and 1/3 at the nine thresholds 0.55 .. 0.95
    # -> (5/9 + 9/3) / 10 = 16/45; class 1 is 1/3; mAP = (16/45 + 1/3) / 2 = 31/90.
    coco = mean_average_precision(predictions, ground_truth, COCO_IOU_THRESHOLDS)
    assert coco.map == pytest.approx(31 / 90)
    np.testing.assert_allclose(coco.per_threshold[:2], [4 / 9, 1 / 3])
    np.testing.assert_allclose(COCO_IOU_THRESHOLDS, np.arange(0.5, 0.96, 0.05))


def test_mean_average_precision_edge_cases():
    perfect = [GroundTruth(np.array([[0, 0, 4, 4]], float), np.array([1]))]
    found = [Detections(np.array([[0, 0, 4, 4]], float), np.array([0.3]), np.array([1]))]
    assert mean_average_precision(found, perfect).map == 1.0
    # Plain tuples work, an image without predictions is fine, a missed object costs recall.
    missed = [*perfect, (np.array([[10, 10, 14, 14]], float), np.array([1]))]
    empty = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
    assert mean_average_precision([*found, empty], missed).map == pytest.approx(0.5)
    assert np.isnan(mean_average_precision([], []).map)
    with pytest.raises(ValueError, match="2 images but ground truth for 1"):
        mean_average_precision([*found, empty], perfect)
