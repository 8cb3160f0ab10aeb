"""The YOLO task model's pieces: anchors, target encoding, the loss and saving."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from apps.car_detection.yolo import (
    MAX_OBJECTS,
    YoloTask,
    encode_targets,
    giou,
    kmeans_anchors,
    load_task,
)

ANCHORS = [[[40.0, 40.0], [60.0, 30.0]], [[8.0, 8.0], [16.0, 12.0]]]  # coarse head first


def tiny_task(classes: int = 2) -> YoloTask:
    image = keras.Input((64, 64, 3))
    x = keras.layers.Conv2D(8, 3, strides=4, padding="same", activation="relu")(image)
    fine = keras.layers.Conv2D(2 * (5 + classes), 1, name="fine_head")(x)  # 16x16
    coarse_features = keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    coarse = keras.layers.Conv2D(2 * (5 + classes), 1, name="coarse_head")(coarse_features)
    backbone = keras.Model(image, [coarse, fine])
    names = ["car", "bus", "truck"][:classes]
    return YoloTask(backbone, names, ANCHORS, name="tiny")


def test_kmeans_finds_the_shapes_of_two_kinds_of_boxes():
    rng = np.random.default_rng(0)
    sizes = np.concatenate([rng.normal(10, 0.5, (50, 2)), rng.normal([80, 40], 1.0, (50, 2))])
    anchors = kmeans_anchors(sizes, 2)
    np.testing.assert_allclose(anchors, [[10, 10], [80, 40]], atol=1.0)


def test_an_object_goes_to_its_cell_and_best_anchors_and_ignored_ones_only_shield():
    boxes = np.array([[0.5, 0.5, 0.75, 0.75], [0.0, 0.0, 0.1, 0.1]])  # 16x16 px; 6.4x6.4 px
    targets, every = encode_targets(
        boxes, np.array([1, -1]), [(2, 2), (16, 16)], ANCHORS, (64, 64), 2
    )
    coarse, fine = targets
    assert coarse[..., 4].sum() == 0  # 16x16 px matches no 40 px anchor above the threshold
    assigned = np.argwhere(fine[..., 4] == 1)
    # Centre (0.625, 0.625) -> cell (10, 10) of 16; the 16x16 box fits both small anchors.
    assert assigned.tolist() == [[10, 10, 0], [10, 10, 1]]
    np.testing.assert_allclose(fine[10, 10, 1, :4], [0.625, 0.625, 0.25, 0.25])
    assert fine[10, 10, 1, 5:].tolist() == [0.0, 1.0]
    assert every.shape == (MAX_OBJECTS, 4)
    np.testing.assert_allclose(every[:2], boxes)  # the ignored box is still there
    assert not every[2:].any()


def test_giou_is_one_for_equal_boxes_and_negative_far_apart():
    a = np.array([[0.0, 0.0, 1.0, 1.0]], np.float32)
    b = np.array([[2.0, 0.0, 3.0, 1.0]], np.float32)
    assert float(giou(a, a)[0]) == pytest.approx(1.0)
    assert float(giou(a, b)[0]) == pytest.approx(-1 / 3)  # IoU 0, hull 3, union 2


def test_the_loss_is_lower_for_a_prediction_that_matches_the_targets():
    task = tiny_task()
    # A 16x16 px car centred in cell (10, 10) of the 16x16 grid.
    boxes, classes = np.array([[0.53125, 0.53125, 0.78125, 0.78125]]), np.array([0])
    targets, every = encode_targets(boxes, classes, task.grids, task.anchors, (64, 64), 2)
    y = (*[t[None] for t in targets], every[None])
    maps = [np.full((1, *grid, 2 * 7), -12.0, np.float32) for grid in task.grids]
    random_loss = float(task.compute_loss(y=y, y_pred=[np.zeros_like(m) for m in maps]))
    # A perfect answer at the assigned anchors: offsets 0.5 (logit 0), size = anchor * exp(t).
    fine = maps[1].reshape(1, 16, 16, 2, 7)
    for anchor, (w, h) in enumerate(ANCHORS[1]):
        fine[0, 10, 10, anchor, :4] = [0.0, 0.0, np.log(16 / w), np.log(16 / h)]
        fine[0, 10, 10, anchor, 4:6] = 12.0
    good_loss = float(task.compute_loss(y=y, y_pred=[maps[0], fine.reshape(1, 16, 16, 14)]))
    assert good_loss < 0.01 < random_loss
    assert float(task.trackers["box"].result()) >= 0


def test_a_saved_task_keeps_its_spec_and_outputs(tmp_path: Path):
    task = tiny_task(3)
    images = np.random.default_rng(0).random((1, 64, 64, 3)).astype(np.float32)
    task.save(tmp_path / "m.keras")
    loaded = load_task(tmp_path / "m.keras")
    assert loaded.names == ["car", "bus", "truck"] and loaded.anchors == ANCHORS
    assert loaded.input_size == (64, 64) and loaded.grids == [(8, 8), (16, 16)]
    for before, after in zip(task(images), loaded(images), strict=True):
        np.testing.assert_allclose(np.asarray(before), np.asarray(after), atol=1e-6)
    network = loaded.detection_network()
    rows = network.predict_heads((images * 255).astype(np.uint8))
    assert [r.shape for r in rows] == [(1, 128, 8), (1, 512, 8)]
    assert network.classes == 3 and network.width == 64
