"""Box geometry: hand-computed IoU, NMS against TensorFlow, letterbox round trips."""

from __future__ import annotations

import numpy as np
import pytest

from shared.boxes import (
    LETTERBOX_FILL,
    box_area,
    clip_boxes,
    cxcywh_to_xyxy,
    iou,
    letterbox,
    nms,
    scale_boxes,
    unletterbox,
    xywh_to_xyxy,
    xyxy_to_cxcywh,
)


@pytest.mark.parametrize(
    ("box_a", "box_b", "expected"),
    [
        # The course's cases (reference/cars.md section 4): overlap 1x1, union 4 + 4 - 1.
        ((2, 1, 4, 3), (1, 2, 3, 4), 0.14285714285714285),
        ((1, 2, 3, 4), (5, 6, 7, 8), 0.0),  # disjoint
        ((1, 1, 2, 2), (2, 2, 3, 3), 0.0),  # touching at a corner
        ((1, 1, 3, 3), (2, 3, 3, 4), 0.0),  # touching along an edge
        ((0, 0, 4, 4), (0, 0, 4, 4), 1.0),  # identical
        ((0, 0, 4, 4), (1, 1, 3, 3), 0.25),  # contained: 4 / 16
        ((0, 0, 2, 1), (1, 0, 3, 1), 1 / 3),  # half-overlapping strips: 1 / (2 + 2 - 1)
    ],
)
def test_iou_hand_computed(box_a, box_b, expected):
    value = iou(np.array([box_a]), np.array([box_b]))
    assert value.shape == (1, 1)
    assert value[0, 0] == pytest.approx(expected, abs=1e-15)
    assert iou(np.array([box_b]), np.array([box_a]))[0, 0] == pytest.approx(expected, abs=1e-15)


def test_iou_is_pairwise_and_handles_empty_inputs():
    boxes_a = np.array([[0, 0, 2, 2], [1, 1, 3, 3]], dtype=float)
    boxes_b = np.array([[0, 0, 2, 2], [2, 2, 4, 4], [0, 0, 1, 1]], dtype=float)
    expected = np.array([[1.0, 0.0, 0.25], [1 / 7, 1 / 7, 0.0]])
    np.testing.assert_allclose(iou(boxes_a, boxes_b), expected)
    assert iou(np.zeros((0, 4)), boxes_b).shape == (0, 3)
    assert iou(boxes_a, []).shape == (2, 0)
    # Zero-area boxes never match, even themselves.
    assert iou([[1, 1, 1, 1]], [[1, 1, 1, 1]])[0, 0] == 0.0


def test_iou_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"shape \(N, 4\)"):
        iou(np.zeros((2, 3)), np.zeros((1, 4)))


def test_box_area_counts_inverted_boxes_as_empty():
    np.testing.assert_array_equal(box_area([[0, 0, 2, 3], [2, 2, 1, 1]]), [6.0, 0.0])


def _random_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    """Jittered copies of a few boxes, so that low and high IoU thresholds both bite."""
    centres = rng.uniform(0, 100, size=(count // 6 + 1, 2))[rng.integers(0, count // 6 + 1, count)]
    sizes = rng.uniform(10, 40, size=(count, 2))
    corners = centres + rng.normal(0, 3, size=(count, 2))
    return np.concatenate([corners, corners + sizes], axis=1)


@pytest.fixture(scope="module")
def tf_nms():
    tf = pytest.importorskip("tensorflow")

    def run(boxes, scores, iou_threshold, max_output_size=None):
        # TF wants [y1, x1, y2, x2]; IoU is the same with the axes swapped.
        yxyx = boxes[:, [1, 0, 3, 2]]
        limit = len(boxes) if max_output_size is None else max_output_size
        kept = tf.image.non_max_suppression(
            yxyx.astype(np.float32), scores.astype(np.float32), limit, iou_threshold
        )
        return kept.numpy()

    return run


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("iou_threshold", [0.3, 0.5, 0.7])
def test_nms_matches_tensorflow(tf_nms, seed, iou_threshold):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, 60)
    scores = rng.uniform(0, 1, size=60)
    expected = tf_nms(boxes, scores, iou_threshold)
    kept = nms(boxes, scores, iou_threshold)
    assert 1 < len(kept) < 60  # the case really suppresses something
    np.testing.assert_array_equal(kept, expected)
    np.testing.assert_array_equal(nms(boxes, scores, iou_threshold, max_det=5), expected[:5])


def test_nms_per_class_matches_tensorflow_run_class_by_class(tf_nms):
    rng = np.random.default_rng(7)
    boxes = _random_boxes(rng, 80)
    scores = rng.uniform(0, 1, size=80)
    classes = rng.integers(0, 3, size=80)
    per_class = []
    for label in range(3):
        members = np.flatnonzero(classes == label)
        per_class.extend(members[tf_nms(boxes[members], scores[members], 0.4)])
    expected = sorted(per_class, key=lambda index: -scores[index])
    np.testing.assert_array_equal(nms(boxes, scores, 0.4, classes=classes), expected)
    assert len(expected) > len(nms(boxes, scores, 0.4))  # classes really change the answer


def test_nms_per_class_by_hand():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 9], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    # Without classes box 0 suppresses boxes 1 and 2 (IoU 0.81 and 0.9).
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [0, 3])
    # Box 1 is another class (say a truck on the car): it survives; box 2 does not.
    np.testing.assert_array_equal(nms(boxes, scores, 0.5, classes=[2, 4, 2, 2]), [0, 1, 3])
    np.testing.assert_array_equal(nms(boxes, scores, 0.5, classes=[2, 4, 2, 2], max_det=2), [0, 1])


def test_nms_threshold_is_strict_and_ties_keep_input_order():
    boxes = np.array([[0, 0, 2, 1], [0, 0, 1, 1]], dtype=float)  # IoU exactly 0.5
    np.testing.assert_array_equal(nms(boxes, [0.9, 0.8], 0.5), [0, 1])
    np.testing.assert_array_equal(nms(boxes, [0.9, 0.8], 0.49), [0])
    np.testing.assert_array_equal(nms(boxes, [0.5, 0.5], 0.49), [0])
    assert nms(np.zeros((0, 4)), [], 0.5).shape == (0,)


def test_nms_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 boxes but 1 scores"):
        nms(np.zeros((2, 4)), [0.5], 0.5)


def test_format_conversions():
    xyxy = np.array([[10, 20, 50, 80], [0, 0, 1, 1]], dtype=float)
    cxcywh = np.array([[30, 50, 40, 60], [0.5, 0.5, 1, 1]], dtype=float)
    np.testing.assert_allclose(xyxy_to_cxcywh(xyxy), cxcywh)
    np.testing.assert_allclose(cxcywh_to_xyxy(cxcywh), xyxy)
    np.testing.assert_allclose(xywh_to_xyxy([[10, 20, 40, 60]]), [[10, 20, 50, 80]])
    assert cxcywh_to_xyxy(np.zeros((0, 4))).shape == (0, 4)


def test_clip_and_scale_boxes():
    boxes = np.array([[-5, 10, 330, 400]], dtype=float)
    np.testing.assert_array_equal(clip_boxes(boxes, 320, 240), [[0, 10, 320, 240]])
    # A 320x320 network input stretched from a 1280x720 frame.
    np.testing.assert_allclose(
        scale_boxes([[32, 64, 160, 320]], (320, 320), (1280, 720)), [[128, 144, 640, 720]]
    )


def test_letterbox_geometry_and_padding():
    image = np.zeros((100, 200, 3), dtype=np.uint8)  # height 100, width 200
    boxed, scale, (pad_x, pad_y) = letterbox(image, 100)
    assert boxed.shape == (100, 100, 3) and boxed.dtype == np.uint8
    assert scale == 0.5 and (pad_x, pad_y) == (0, 25)
    assert (boxed[:25] == LETTERBOX_FILL).all() and (boxed[75:] == LETTERBOX_FILL).all()
    assert (boxed[25:75] == 0).all()

    tall, scale, pad = letterbox(np.zeros((60, 30), dtype=np.uint8), (40, 30))  # (width, height)
    assert tall.shape == (30, 40) and scale == 0.5 and pad == (12, 0)


def test_letterbox_round_trip_finds_the_drawn_box_again():
    height, width = 480, 640
    image = np.zeros((height, width, 3), dtype=np.uint8)
    original_box = np.array([[100, 60, 300, 200]], dtype=float)
    x1, y1, x2, y2 = original_box[0].astype(int)
    image[y1:y2, x1:x2] = 255

    boxed, scale, pad = letterbox(image, 416)
    bright_rows, bright_cols = np.nonzero(boxed[..., 0] > 127)
    found = np.array(
        [[bright_cols.min(), bright_rows.min(), bright_cols.max() + 1, bright_rows.max() + 1]],
        dtype=float,
    )
    np.testing.assert_allclose(unletterbox(found, scale, pad), original_box, atol=2.0)

    # The forward mapping and unletterbox are exact inverses.
    forward = original_box * scale + np.array([pad[0], pad[1]] * 2)
    np.testing.assert_allclose(unletterbox(forward, scale, pad), original_box)


def test_letterbox_keeps_same_size_images_untouched():
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    boxed, scale, pad = letterbox(image, 4)
    np.testing.assert_array_equal(boxed, image)
    assert scale == 1.0 and pad == (0, 0)
