"""Tracking metrics (CLEAR MOT, IDF1, HOTA) on sequences small enough to work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from shared.metrics import HOTA_ALPHAS, TrackedBoxes, tracking_metrics

A = [0.0, 0.0, 10.0, 10.0]  # ground-truth object 1, still
B = [50.0, 0.0, 60.0, 10.0]  # ground-truth object 2, still
A_LOW = [0.0, 0.0, 10.0, 7.2]  # inside A: IoU 72 / 100 = 0.72
FAR = [200.0, 200.0, 210.0, 210.0]


def rows(*items) -> TrackedBoxes:
    frames, ids, boxes = zip(*items, strict=True)
    return TrackedBoxes(np.array(frames), np.array(ids), np.array(boxes))


# Two objects seen in frames 0-3. Track 10 follows object 1 (its frame-0 box a little short);
# object 2 is track 20 in frames 0-1, missed in frame 2, and track 21 in frame 3, where a
# stray track 30 also appears far from anything.
TRUTH = rows(*[(f, 1, A) for f in range(4)], *[(f, 2, B) for f in range(4)])
PREDICTED = rows(
    (0, 10, A_LOW),
    *[(f, 10, A) for f in (1, 2, 3)],
    (0, 20, B),
    (1, 20, B),
    (3, 21, B),
    (3, 30, FAR),
)


def test_clear_mot_by_hand():
    scores = tracking_metrics(TRUTH, PREDICTED)
    assert (scores.num_frames, scores.num_truth, scores.num_predicted) == (4, 8, 8)
    # Pairs: object 1 in all 4 frames, object 2 in frames 0, 1, 3.
    assert (scores.matches, scores.misses, scores.false_positives) == (7, 1, 1)
    assert scores.id_switches == 1  # object 2: track 20, then 21
    assert scores.mota == pytest.approx(1 - (1 + 1 + 1) / 8)
    assert scores.motp == pytest.approx((0.72 + 6 * 1.0) / 7)


def test_identity_scores_by_hand():
    scores = tracking_metrics(TRUTH, PREDICTED)
    # Best one-to-one trajectory pairing: 1-10 (4 frames), 2-20 (2 frames); IDTP = 6.
    assert scores.idp == pytest.approx(6 / 8)
    assert scores.idr == pytest.approx(6 / 8)
    assert scores.idf1 == pytest.approx(2 * 6 / (8 + 8))


def test_hota_by_hand():
    # Thresholds alpha <= 0.70 (14 of them) accept the 0.72 pair: TP 7, FN 1, FP 1, so
    # DetA = 7/9. Association of each pair = matches / (|truth| + |track| - matches):
    # 1-10: 4/4 = 1, 2-20: 2/4, 2-21: 1/4; AssA = (4*1 + 2*0.5 + 1*0.25) / 7 = 0.75.
    # Above (5 thresholds) it is a miss and a false positive: TP 6, DetA 6/10;
    # 1-10: 3/5; AssA = (3*0.6 + 2*0.5 + 1*0.25) / 6.
    low = (7 / 9, 0.75)
    high = (6 / 10, (3 * 0.6 + 2 * 0.5 + 0.25) / 6)
    assert np.count_nonzero(HOTA_ALPHAS <= 0.72) == 14
    expected_hota = (14 * math.sqrt(low[0] * low[1]) + 5 * math.sqrt(high[0] * high[1])) / 19
    scores = tracking_metrics(TRUTH, PREDICTED)
    assert scores.hota == pytest.approx(expected_hota)
    assert scores.deta == pytest.approx((14 * low[0] + 5 * high[0]) / 19)
    assert scores.assa == pytest.approx((14 * low[1] + 5 * high[1]) / 19)


def test_perfect_tracking_scores_one_whatever_the_ids():
    renamed = TrackedBoxes(TRUTH.frames, TRUTH.ids * 7 + 100, TRUTH.boxes)
    scores = tracking_metrics(TRUTH, renamed)
    assert (scores.mota, scores.motp, scores.idf1, scores.hota) == pytest.approx((1, 1, 1, 1))
    assert scores.id_switches == 0


def test_a_pair_is_kept_while_it_still_matches():
    # Frame 0: object 1 pairs with track 5. Frame 1: track 6 sits exactly on the object and
    # track 5 still overlaps it (IoU 0.8 >= 0.5): the pair 1-5 is kept, no switch, and
    # track 6 is a false positive. Frame 2: track 5 is gone, so track 6 takes over: a switch.
    truth = rows((0, 1, A), (1, 1, A), (2, 1, A))
    predicted = rows((0, 5, A), (1, 5, [0.0, 0.0, 10.0, 8.0]), (1, 6, A), (2, 6, A))
    scores = tracking_metrics(truth, predicted)
    assert (scores.matches, scores.false_positives, scores.id_switches) == (3, 1, 1)
    assert scores.motp == pytest.approx((1 + 0.8 + 1) / 3)
    assert scores.mota == pytest.approx(1 - (0 + 1 + 1) / 3)


def test_no_match_below_the_iou_threshold_and_negative_mota():
    truth = rows((0, 1, A))
    predicted = rows((0, 9, [0.0, 0.0, 10.0, 4.0]), (0, 8, FAR))  # IoU 0.4 and 0
    scores = tracking_metrics(truth, predicted)
    assert (scores.matches, scores.misses, scores.false_positives) == (0, 1, 2)
    assert scores.mota == pytest.approx(1 - 3 / 1)
    assert tracking_metrics(truth, predicted, iou_threshold=0.4).matches == 1


def test_empty_inputs_and_bad_rows():
    empty = TrackedBoxes(np.zeros(0), np.zeros(0), np.zeros((0, 4)))
    scores = tracking_metrics(TRUTH, empty)
    assert (scores.misses, scores.mota, scores.idf1, scores.hota) == (8, 0.0, 0.0, 0.0)
    assert tracking_metrics(empty, empty).num_frames == 0
    with pytest.raises(ValueError, match="twice in one frame"):
        tracking_metrics(rows((0, 1, A), (0, 1, B)), empty)
    with pytest.raises(ValueError, match="differ"):
        tracking_metrics(TrackedBoxes(np.zeros(2), np.zeros(1), np.zeros((2, 4))), empty)
