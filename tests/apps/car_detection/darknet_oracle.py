"""OpenCV's Darknet reader as the oracle for the Keras import, and random Darknet weights.

A module with its own name (not conftest.py) so that test files import it unambiguously
when other test folders have conftest files of their own.

OpenCV post-processes its head outputs, so the helpers undo that where it can be undone and
reproduce it where it cannot:
- ``[yolo]`` layers multiply class scores by objectness (as ours do), zero scores under the
  layer's ``thresh`` and run NMS under ``nms_threshold``: both are set to 0 in the cfg text
  handed to OpenCV, which leaves the raw decoded values.
- ``[region]`` layers (YOLOv2) always run per-class NMS at IoU 0.4 over class scores; there is
  no cfg key to turn it off, so ``opencv_region_nms`` applies the same ``cv2.dnn.NMSBoxes``
  pass to our output before comparing.
"""

from __future__ import annotations

import copy
from pathlib import Path

import cv2
import numpy as np

from apps.car_detection.cfg import Section, format_cfg
from apps.car_detection.darknet import NetworkPlan

REGION_NMS_IOU = 0.4  # RegionLayer's default; OpenCV's Darknet importer never overrides it


def random_parameters(plan: NetworkPlan, seed: int) -> list[dict[str, np.ndarray]]:
    """Random but well-scaled Darknet parameters: activations stay O(1) through deep nets."""
    rng = np.random.default_rng(seed)
    parameters = []
    for _, conv in plan.convolutions:
        shapes = conv.array_shapes()
        fan_in = int(np.prod(conv.kernel_shape[1:]))
        arrays = {
            "bias": rng.normal(0.0, 0.1, shapes["bias"]),
            "kernel": rng.normal(0.0, np.sqrt(1.0 / fan_in), shapes["kernel"]),
        }
        if conv.batch_normalize:
            arrays["gamma"] = rng.uniform(0.2, 0.6, shapes["gamma"])
            arrays["mean"] = rng.normal(0.0, 0.1, shapes["mean"])
            arrays["variance"] = rng.uniform(0.5, 1.5, shapes["variance"])
        parameters.append({name: a.astype(np.float32) for name, a in arrays.items()})
    return parameters


def opencv_net(sections: list[Section], weights: Path) -> cv2.dnn.Net:
    """OpenCV's reading of the same cfg with head thresholds and yolo NMS turned off."""
    sections = copy.deepcopy(sections)
    for section in sections:
        if section.type in ("yolo", "region"):
            section.options["thresh"] = "0"
            section.options["nms_threshold"] = "0"
    text = format_cfg(sections).encode()
    return cv2.dnn.readNetFromDarknet(np.frombuffer(text, np.uint8), np.fromfile(weights, np.uint8))


def opencv_forward(net: cv2.dnn.Net, blob: np.ndarray) -> list[np.ndarray]:
    net.setInput(blob)
    return list(net.forward(net.getUnconnectedOutLayersNames()))


def opencv_region_nms(rows: np.ndarray) -> np.ndarray:
    """OpenCV RegionLayer's per-class NMS (do_nms_sort) applied to decoded rows (N, 5 + C)."""
    boxes = [(float(x - w / 2), float(y - h / 2), float(w), float(h)) for x, y, w, h in rows[:, :4]]
    suppressed = rows.copy()
    suppressed[:, 5:] = 0
    for column in range(5, rows.shape[1]):
        keep = np.asarray(cv2.dnn.NMSBoxes(boxes, rows[:, column].tolist(), 0.0, REGION_NMS_IOU))
        keep = keep.reshape(-1).astype(int)
        suppressed[keep, column] = rows[keep, column]
    return suppressed


def bgr_blob(images: list[np.ndarray], width: int, height: int) -> np.ndarray:
    """Darknet preprocessing by OpenCV: plain resize (no letterbox), RGB, /255, NCHW."""
    return cv2.dnn.blobFromImages(images, 1 / 255, (width, height), swapRB=True, crop=False)


def image_blob(paths: list[Path], width: int, height: int) -> np.ndarray:
    """``bgr_blob`` of image files."""
    images = [cv2.imread(str(p)) for p in paths]
    assert all(image is not None for image in images), paths
    return bgr_blob(images, width, height)
