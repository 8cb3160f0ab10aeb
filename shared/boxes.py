"""Bounding-box geometry shared by the detectors and their evaluation.

Every public API of the project passes boxes as ``[x1, y1, x2, y2]`` in pixels of
the original image, as float arrays of shape ``(N, 4)``. Coordinates are continuous
(a box ``[0, 0, 2, 2]`` has area 4; no Pascal-VOC ``+1``), which is what the
network heads produce and what the course's IoU exercise expects.

Sizes are ``(width, height)`` everywhere in this module, the order OpenCV and
Darknet use, so that ``x`` always comes first. Functions are pure: they never
modify their inputs.
"""

from __future__ import annotations

import cv2
import numpy as np

LETTERBOX_FILL = 114
"""Grey used for the padding, as in Darknet's and ultralytics' letterbox."""


def _as_boxes(boxes: np.ndarray, name: str = "boxes") -> np.ndarray:
    """Return ``boxes`` as a float64 ``(N, 4)`` array, or explain why it is not one."""
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        return array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"{name} must have shape (N, 4), got {array.shape}")
    return array


def _as_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """Turn an ``int`` (square) or ``(width, height)`` into ``(width, height)``."""
    if isinstance(size, int | np.integer):
        width = height = int(size)
    else:
        width, height = (int(value) for value in size)
    if width <= 0 or height <= 0:
        raise ValueError(f"size must be positive, got {size}")
    return width, height


def box_area(boxes: np.ndarray) -> np.ndarray:
    """Area of each ``[x1, y1, x2, y2]`` box; inverted boxes count as empty."""
    boxes = _as_boxes(boxes)
    # np.maximum, not np.clip: the same numbers without clip's Python wrapper, which cost
    # more than the arithmetic in NMS's per-box IoU calls on a video's few candidates.
    widths = np.maximum(boxes[:, 2] - boxes[:, 0], 0.0)
    heights = np.maximum(boxes[:, 3] - boxes[:, 1], 0.0)
    return widths * heights


def iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise intersection over union, shape ``(N, M)``.

    IoU = area(a ∩ b) / area(a ∪ b). Boxes that only touch (share an edge or a
    corner) have an empty intersection, hence IoU 0. Two empty boxes give 0 rather
    than 0/0, so that degenerate predictions never match anything.
    """
    boxes_a = _as_boxes(boxes_a, "boxes_a")
    boxes_b = _as_boxes(boxes_b, "boxes_b")
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    overlap = np.maximum(bottom_right - top_left, 0.0)
    intersection = overlap[..., 0] * overlap[..., 1]
    union = box_area(boxes_a)[:, None] + box_area(boxes_b)[None, :] - intersection
    return np.divide(intersection, union, out=np.zeros_like(intersection), where=union > 0)


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    classes: np.ndarray | None = None,
    max_det: int | None = None,
) -> np.ndarray:
    """Greedy non-maximum suppression; returns kept indices, best score first.

    The highest-scoring remaining box is kept and every remaining box that
    overlaps it with IoU strictly greater than ``iou_threshold`` is dropped (the
    rule of Darknet, OpenCV and ``tf.image.non_max_suppression``). With
    ``classes``, only boxes of the same class suppress each other, so a car
    never hides an overlapping truck. ``max_det`` stops after that many boxes.
    Equal scores keep their input order, so the result is deterministic.
    """
    boxes = _as_boxes(boxes)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if scores.shape[0] != boxes.shape[0]:
        raise ValueError(f"got {boxes.shape[0]} boxes but {scores.shape[0]} scores")
    if classes is not None:
        classes = np.asarray(classes).reshape(-1)
        if classes.shape[0] != boxes.shape[0]:
            raise ValueError(f"got {boxes.shape[0]} boxes but {classes.shape[0]} classes")
    limit = boxes.shape[0] if max_det is None else max(int(max_det), 0)

    remaining = np.argsort(-scores, kind="stable")
    kept: list[int] = []
    while remaining.size and len(kept) < limit:
        best, others = remaining[0], remaining[1:]
        kept.append(int(best))
        suppressed = iou(boxes[best : best + 1], boxes[others])[0] > iou_threshold
        if classes is not None:
            suppressed &= classes[others] == classes[best]
        remaining = others[~suppressed]
    return np.asarray(kept, dtype=np.int64)


def cxcywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Centre-size boxes ``[cx, cy, w, h]`` (YOLO heads and labels) to corners."""
    boxes = _as_boxes(boxes)
    half = boxes[:, 2:] / 2.0
    return np.concatenate([boxes[:, :2] - half, boxes[:, :2] + half], axis=1)


def xyxy_to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """Corner boxes to centre-size ``[cx, cy, w, h]`` (for writing YOLO labels)."""
    boxes = _as_boxes(boxes)
    sizes = boxes[:, 2:] - boxes[:, :2]
    return np.concatenate([boxes[:, :2] + sizes / 2.0, sizes], axis=1)


def xywh_to_xyxy(boxes: np.ndarray) -> np.ndarray:
    """Top-left-size boxes ``[x, y, w, h]`` (OpenCV detectors) to corners."""
    boxes = _as_boxes(boxes)
    return np.concatenate([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]], axis=1)


def clip_boxes(boxes: np.ndarray, width: float, height: float) -> np.ndarray:
    """Clip boxes to the image ``[0, width] x [0, height]``."""
    boxes = _as_boxes(boxes)
    limits = np.array([width, height, width, height], dtype=np.float64)
    return np.clip(boxes, 0.0, limits)


def scale_boxes(
    boxes: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]
) -> np.ndarray:
    """Map boxes between two plainly resized versions of one image.

    Darknet (and Yolo-Fastest) stretch the frame to the network size without
    letterboxing; this undoes that: ``scale_boxes(boxes, (320, 320), (1280, 720))``.
    Sizes are ``(width, height)``.
    """
    boxes = _as_boxes(boxes)
    from_width, from_height = _as_size(from_size)
    to_width, to_height = _as_size(to_size)
    factors = np.array([to_width / from_width, to_height / from_height] * 2, dtype=np.float64)
    return boxes * factors


def letterbox(
    image: np.ndarray, size: int | tuple[int, int]
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping the aspect ratio, then pad with grey 114 to ``size``.

    ``size`` is an ``int`` for a square or ``(width, height)``. Returns the new
    image, the ``scale`` applied to the original and the ``(pad_x, pad_y)`` added
    on the left and top (the rest of the padding goes right and bottom), which is
    exactly what ``unletterbox`` needs to map boxes back to the original image.
    """
    image = np.asarray(image)
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image must be a non-empty HxW or HxWxC array, got {image.shape}")
    target_width, target_height = _as_size(size)
    height, width = image.shape[:2]
    scale = min(target_width / width, target_height / height)
    new_width = min(max(round(width * scale), 1), target_width)
    new_height = min(max(round(height * scale), 1), target_height)
    if (new_width, new_height) == (width, height):
        resized = image
    else:
        shrinking = scale < 1.0
        interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
        resized = cv2.resize(image, (new_width, new_height), interpolation=interpolation)
        if image.ndim == 3 and resized.ndim == 2:  # OpenCV drops a single channel axis
            resized = resized[:, :, None]
    pad_x = (target_width - new_width) // 2
    pad_y = (target_height - new_height) // 2
    canvas = np.full(
        (target_height, target_width, *image.shape[2:]), LETTERBOX_FILL, dtype=image.dtype
    )
    canvas[pad_y : pad_y + new_height, pad_x : pad_x + new_width] = resized
    return canvas, scale, (pad_x, pad_y)


def unletterbox(boxes: np.ndarray, scale: float, pad: tuple[float, float]) -> np.ndarray:
    """Map boxes from a letterboxed image back to the original image's pixels.

    The inverse of the geometry of ``letterbox``: remove the padding, then
    divide by the scale. Clip the result with ``clip_boxes`` when boxes may
    reach into the padding.
    """
    boxes = _as_boxes(boxes)
    pad_x, pad_y = pad
    offset = np.array([pad_x, pad_y, pad_x, pad_y], dtype=np.float64)
    return (boxes - offset) / scale
