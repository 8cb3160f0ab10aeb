"""Head rows to detections: hand-made cases, and the whole chain against OpenCV on real photos."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from darknet_oracle import bgr_blob, opencv_forward, opencv_net

from apps.car_detection.cfg import read_cfg
from apps.car_detection.darknet import load_darknet
from apps.car_detection.decode import detect, preprocess, select_detections
from apps.car_detection.network import load_network


def row(cx, cy, w, h, objectness, *class_scores):
    return [cx, cy, w, h, objectness, *class_scores]


ROWS = np.array(
    [
        row(0.5, 0.5, 0.2, 0.4, 0.9, 0.80, 0.10, 0.00),  # car
        row(0.51, 0.5, 0.2, 0.4, 0.9, 0.70, 0.60, 0.00),  # car (hidden by row 0) and truck?
        row(0.1, 0.1, 0.1, 0.1, 0.3, 0.20, 0.00, 0.00),  # under conf
        row(0.95, 0.9, 0.2, 0.4, 0.9, 0.00, 0.00, 0.50),  # third class, clipped at the edge
    ],
    dtype=np.float32,
)


def test_multi_label_thresholds_suppresses_per_class_and_maps_to_pixels():
    found = select_detections(ROWS, (200, 100), conf=0.25, iou=0.45, multi_label=True)
    assert found.class_ids.tolist() == [0, 1, 2]
    np.testing.assert_allclose(found.scores, [0.8, 0.6, 0.5])
    np.testing.assert_allclose(found.boxes[0], [80, 30, 120, 70], atol=1e-4)
    np.testing.assert_allclose(found.boxes[1], [82, 30, 122, 70], atol=1e-4)
    np.testing.assert_allclose(found.boxes[2], [170, 70, 200, 100], atol=1e-4)
    only_trucks = select_detections(ROWS, (200, 100), 0.25, 0.45, classes=[1], multi_label=True)
    assert only_trucks.class_ids.tolist() == [1] and len(only_trucks) == 1
    assert len(select_detections(ROWS, (200, 100), 0.25, 0.45, max_det=2, multi_label=True)) == 2


def test_by_default_one_box_gets_one_label_its_best_class():
    """The issue's "car 0.35" + "truck 0.25" on one box: by default only the car remains."""
    same_box = np.array([row(0.5, 0.5, 0.2, 0.4, 0.9, 0.35, 0.25, 0.0)], dtype=np.float32)
    found = select_detections(same_box, (200, 100), conf=0.2, iou=0.45)
    assert found.class_ids.tolist() == [0]
    np.testing.assert_allclose(found.scores, [0.35])
    both = select_detections(same_box, (200, 100), conf=0.2, iou=0.45, multi_label=True)
    assert both.class_ids.tolist() == [0, 1]

    found = select_detections(ROWS, (200, 100), conf=0.25, iou=0.45)
    assert found.class_ids.tolist() == [0, 2]  # row 1's best class is car, under row 0
    # A row whose best class is not asked for is dropped, not relabelled as its runner-up.
    assert len(select_detections(same_box, (200, 100), 0.2, 0.45, classes=[1])) == 0


def test_by_default_no_two_detections_share_a_box(weights_dir: Path, test_images):
    """On real frames: one label per box by default, where Darknet's rule gives two."""
    model, _ = yolo_fastest(weights_dir, "yolo-fastest-1.1-xl")
    frames = [cv2.imread(str(path))[:, :, ::-1] for path in test_images]
    single = detect(model, frames, conf=0.1)
    multi = detect(model, frames, conf=0.1, multi_label=True)

    def boxes(found) -> list[tuple[float, ...]]:
        return [tuple(box) for image in found for box in image.boxes.round(1).tolist()]

    assert len(set(boxes(single))) == len(boxes(single))
    assert len(set(boxes(multi))) < len(boxes(multi)), "the frames should hold a doubled box"


def test_preprocess_equals_opencv_blob(test_images):
    rgb = cv2.imread(str(test_images[1]))[:, :, ::-1]
    ours = preprocess([rgb, rgb[:300, :200]], 96, 64)
    assert ours.shape == (2, 64, 96, 3) and ours.dtype == np.uint8
    blob = bgr_blob([rgb[:, :, ::-1]], 96, 64)
    np.testing.assert_allclose(ours[:1] / np.float32(255), blob.transpose(0, 2, 3, 1), atol=1e-6)


def opencv_detections(net, bgr: np.ndarray, size: tuple[int, int], conf: float, iou: float):
    """The usual OpenCV pipeline with Darknet's multi-label rule: forward, (row, class) pairs
    over conf, NMSBoxesBatched."""
    rows = np.concatenate(opencv_forward(net, bgr_blob([bgr], *size)))
    picked, classes = np.nonzero(rows[:, 5:] > conf)
    scores = rows[picked, 5 + classes]
    height, width = bgr.shape[:2]
    centre = rows[picked, :2] * [width, height]
    extent = rows[picked, 2:4] * [width, height]
    boxes = np.concatenate([centre - extent / 2, extent], axis=1)
    keep = np.asarray(
        cv2.dnn.NMSBoxesBatched(boxes.tolist(), scores.tolist(), classes.tolist(), conf, iou)
    ).reshape(-1)
    corners = np.concatenate([boxes[keep, :2], boxes[keep, :2] + boxes[keep, 2:]], axis=1)
    corners = np.clip(corners, 0, [width, height, width, height])
    order = np.lexsort((-scores[keep], classes[keep]))
    return corners[order], scores[keep][order], classes[keep][order]


CONF, IOU = 0.25, 0.45
# A score this close to CONF may fall on either side of it in two float implementations.
BORDERLINE = 1e-4


def assert_same_detections(ours, frame: np.ndarray, net) -> None:
    """Ours equals OpenCV's pipeline on one RGB frame, up to borderline scores."""
    boxes, scores, classes = opencv_detections(net, frame[:, :, ::-1], (320, 320), CONF, IOU)
    clear = scores > CONF + BORDERLINE
    order = np.lexsort((-ours.scores, ours.class_ids))
    order = order[ours.scores[order] > CONF + BORDERLINE]
    assert ours.class_ids[order].tolist() == classes[clear].tolist()
    np.testing.assert_allclose(ours.scores[order], scores[clear], atol=1e-4)
    np.testing.assert_allclose(ours.boxes[order], boxes[clear], atol=0.05)


def yolo_fastest(weights_dir: Path, name: str):
    """(our model, OpenCV's net) for one of the real Yolo-Fastest models."""
    cfg = weights_dir / "yolo-fastest" / f"{name}.cfg"
    weights = weights_dir / "yolo-fastest" / f"{name}.weights"
    return load_darknet(cfg, weights), opencv_net(read_cfg(cfg), weights)


@pytest.mark.parametrize("name", ["yolo-fastest-1.1", "yolo-fastest-1.1-xl"])
def test_final_detections_equal_the_opencv_pipeline(name, weights_dir: Path, test_images):
    model, net = yolo_fastest(weights_dir, name)
    frames = [cv2.imread(str(path))[:, :, ::-1] for path in test_images]
    found = detect(model, frames, conf=CONF, iou=IOU, multi_label=True)
    for frame, ours in zip(frames, found, strict=True):
        assert_same_detections(ours, frame, net)
    # The dashcam frame (test_images[1]) holds cars that both find.
    assert (found[1].class_ids == 2).sum() >= 3


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["openvino", "tensorflow"])
def test_detections_equal_opencv_on_every_dashcam_frame(runtime, offline_weights, data_dir: Path):
    """120 consecutive real frames, batched 8 at a time: the same objects in every frame, on
    either runtime (OpenVINO reads the compiled model from the cache, as detect-cars does)."""
    folder = offline_weights / "yolo-fastest"
    cfg, weights = folder / "yolo-fastest-1.1-xl.cfg", folder / "yolo-fastest-1.1-xl.weights"
    model, net = load_network(cfg, weights, runtime=runtime), opencv_net(read_cfg(cfg), weights)
    assert model.runtime == runtime
    paths = sorted((data_dir / "cars/driveai/images").glob("0*.jpg"))
    assert len(paths) == 120
    frames_with_cars = 0
    for start in range(0, len(paths), 8):
        frames = [cv2.imread(str(path))[:, :, ::-1] for path in paths[start : start + 8]]
        found = detect(model, frames, CONF, IOU, multi_label=True)
        for frame, ours in zip(frames, found, strict=True):
            assert_same_detections(ours, frame, net)
            frames_with_cars += bool((ours.class_ids == 2).any())
    assert frames_with_cars >= 100
