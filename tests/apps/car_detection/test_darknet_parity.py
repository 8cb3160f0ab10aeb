"""The Keras import of Darknet networks computes what OpenCV's Darknet reader computes.

OpenCV (``cv2.dnn.readNetFromDarknet``) is an independent implementation of the same format,
so agreement to 1e-4 on every decoded head value (boxes, objectness, class scores) shows that
the cfg semantics (padding, pooling, routes, reorg, heads) and the weights layout are right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from darknet_oracle import image_blob, opencv_forward, opencv_net, opencv_region_nms

from apps.car_detection.cfg import read_cfg
from apps.car_detection.darknet import build_model, load_darknet, plan_network, read_darknet_weights

TOLERANCE = 1e-4


def keras_forward(model, blob: np.ndarray) -> list[np.ndarray]:
    return model.predict_heads(blob.transpose(0, 2, 3, 1))


def assert_heads_match(ours: list[np.ndarray], theirs: list[np.ndarray], region: bool) -> None:
    assert len(ours) == len(theirs)
    for mine, reference in zip(ours, theirs, strict=True):
        reference = reference.reshape(mine.shape)
        if region:
            mine = np.stack([opencv_region_nms(rows) for rows in mine])
        np.testing.assert_allclose(mine, reference, rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", ["yolo-fastest-1.1", "yolo-fastest-1.1-xl"])
def test_real_yolo_fastest_heads_equal_opencv(name: str, weights_dir: Path, test_images):
    cfg = weights_dir / "yolo-fastest" / f"{name}.cfg"
    weights = weights_dir / "yolo-fastest" / f"{name}.weights"
    model = load_darknet(cfg, weights)
    net = opencv_net(read_cfg(cfg), weights)
    for image in test_images:
        blob = image_blob([image], model.width, model.height)
        ours = keras_forward(model, blob)
        theirs = opencv_forward(net, blob)
        assert_heads_match(ours, theirs, region=False)
        # Real weights find real objects: the comparison is not between two near-zero maps.
        assert max(float(head[..., 5:].max()) for head in ours) > 0.5


def _random_weights_case(name: str, size: tuple[int, int], weights_dir, random_weights, images):
    sections = read_cfg(weights_dir / "darknet-cfg" / f"{name}.cfg")
    sections[0].options.update(width=str(size[0]), height=str(size[1]))
    plan = plan_network(sections)
    weights = random_weights(plan, seed=7)
    model = build_model(plan, read_darknet_weights(weights, plan))
    blob = image_blob(images, *size)
    ours = keras_forward(model, blob)
    region = any(section.type == "region" for section in sections)
    theirs = opencv_forward(opencv_net(sections, weights), blob)
    assert_heads_match(ours, theirs, region)
    # Random weights still spread scores, so a shape-only or all-zero match cannot pass.
    assert all(np.ptp(head[..., 5:]) > 1e-3 for head in ours)


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("yolov2-tiny", (128, 128)),
        ("yolov2", (128, 96)),
        ("yolov3-tiny", (160, 96)),
        ("yolov4-tiny", (128, 128)),
    ],
)
def test_random_weights_equal_opencv(name, size, weights_dir, random_weights, test_images):
    _random_weights_case(name, size, weights_dir, random_weights, test_images)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["yolov3", "yolov4", "yolov2-voc"])
def test_random_weights_equal_opencv_big_networks(name, weights_dir, random_weights, test_images):
    _random_weights_case(name, (160, 128), weights_dir, random_weights, test_images)
