"""From frames to detections: Darknet preprocessing, head rows to boxes, threshold, NMS.

The network's ``DetectionHead`` layers already decode every anchor of every cell inside the
graph into ``[cx, cy, w, h, objectness, objectness * p(class) ...]`` normalised rows, so what
is left here is per-image and cheap: give each row its best class (or, with ``multi_label``,
every class whose score beats ``conf``: Darknet's rule for mAP, where one box can be "car 0.35"
and "truck 0.25" at once), keep scores above ``conf``, map them to the frame's pixels, run
greedy per-class NMS and clip to the frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from shared.boxes import clip_boxes, cxcywh_to_xyxy, nms

# The thresholds every caller starts from (detect-cars, the Python API, the benchmark): Darknet's
# and OpenCV's usual score threshold and NMS IoU, and COCO's limit on detections per image.
DEFAULT_CONF = 0.25
DEFAULT_IOU = 0.45
DEFAULT_MAX_DET = 100


class Network(Protocol):
    """What detection needs of a network: its input size and its head rows for a uint8 batch.

    ``darknet.DarknetModel`` (TensorFlow) and ``network.DetectorNetwork`` (either runtime) are
    such networks.
    """

    width: int
    height: int

    def predict_heads(self, images: np.ndarray) -> list[np.ndarray]:
        """(B, height, width, 3) uint8 -> one (B, rows, 5 + classes) array per head."""


@dataclass(frozen=True)
class Detections:
    """One image's detections as parallel arrays, best score first.

    ``boxes`` are ``[x1, y1, x2, y2]`` in the original image's pixels (float32, clipped to the
    image), ``scores`` are objectness x class probability, ``class_ids`` index the class names.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def preprocess(frames: Sequence[np.ndarray], width: int, height: int) -> np.ndarray:
    """RGB uint8 frames -> uint8 batch (B, height, width, 3) at the network size.

    Darknet and Yolo-Fastest stretch the frame to the network size (no letterbox); bilinear
    resizing matches ``cv2.dnn.blobFromImage``. The 1/255 scaling happens inside the network.
    """
    batch = np.empty((len(frames), height, width, 3), dtype=np.uint8)
    for slot, frame in zip(batch, frames, strict=True):
        cv2.resize(frame, (width, height), dst=slot, interpolation=cv2.INTER_LINEAR)
    return batch


def select_detections(
    rows: np.ndarray,
    image_size: tuple[int, int],
    conf: float,
    iou: float,
    classes: Sequence[int] | None = None,
    max_det: int | None = None,
    multi_label: bool = False,
) -> Detections:
    """Threshold, NMS and map one image's decoded rows (N, 5 + C) to pixel boxes.

    ``image_size`` is the original (width, height); ``classes`` restricts the class ids kept
    (None keeps all). By default a row is a candidate for its best class only, when that score
    is above ``conf`` and the class is allowed (a row that is mostly "person" does not become a
    weak "car" when only vehicles are asked for), as OpenCV's ``DetectionModel`` and ultralytics
    do. With ``multi_label`` every (row, class) pair above ``conf`` is a candidate: what mAP
    evaluation wants (Darknet's ``detector map``), but it labels one object twice. Boxes of the
    same class suppress each other above ``iou``.
    """
    # A class score is objectness x p(class), never above objectness: rows whose objectness
    # is not above ``conf`` cannot give a candidate, and dropping them first spares the class
    # search over most of a frame's 1,500 rows (the same detections in a third of the time).
    rows = rows[rows[:, 4] > conf]
    scores = rows[:, 5:]
    allowed = np.ones(scores.shape[1], dtype=bool)
    if classes is not None:
        allowed[:] = False
        allowed[list(classes)] = True
    if multi_label:
        candidate_rows, candidate_classes = np.nonzero((scores > conf) & allowed)
    else:
        best = scores.argmax(axis=1)
        best_scores = scores[np.arange(len(best)), best]
        candidate_rows = np.flatnonzero((best_scores > conf) & allowed[best])
        candidate_classes = best[candidate_rows]
    candidate_scores = scores[candidate_rows, candidate_classes]
    width, height = image_size
    scale = np.array([width, height, width, height], dtype=np.float64)
    boxes = cxcywh_to_xyxy(rows[candidate_rows, :4]) * scale
    keep = nms(boxes, candidate_scores, iou, classes=candidate_classes, max_det=max_det)
    return Detections(
        boxes=clip_boxes(boxes[keep], width, height).astype(np.float32),
        scores=candidate_scores[keep].astype(np.float32),
        class_ids=candidate_classes[keep].astype(np.int64),
    )


def detect(
    model: Network,
    frames: Sequence[np.ndarray],
    conf: float = DEFAULT_CONF,
    iou: float = DEFAULT_IOU,
    classes: Sequence[int] | None = None,
    max_det: int | None = DEFAULT_MAX_DET,
    multi_label: bool = False,
) -> list[Detections]:
    """Detect objects in a batch of RGB uint8 frames (any sizes); one ``Detections`` each.

    One label per box unless ``multi_label`` (see ``select_detections``).
    """
    if not frames:
        return []
    heads = model.predict_heads(preprocess(frames, model.width, model.height))
    rows = np.concatenate(heads, axis=1)
    return [
        select_detections(
            image_rows,
            (frame.shape[1], frame.shape[0]),
            conf,
            iou,
            classes,
            max_det,
            multi_label=multi_label,
        )
        for image_rows, frame in zip(rows, frames, strict=True)
    ]
