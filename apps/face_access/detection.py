"""Face detection: YuNet (a box, 5 landmarks and a score per face), Haar cascade as fallback.

YuNet runs through OpenCV's ``cv2.FaceDetectorYN`` on the catalogue's
``yunet_s_640_640.onnx``. Where that file cannot be resolved, OpenCV's own frontal-face Haar
cascade takes over with a one-line warning; it gives boxes only, so its landmarks are placed
at the average positions YuNet finds inside Haar boxes (``HAAR_LANDMARKS_IN_BOX``).

Tight face crops (the 92x112 and 112x112 sets) are detected as they are, but their faces
touch the image edges, where a detector sees half a forehead or chin; small images
(``FRAMED_MAX_SIDE`` or less, where tight crops come from) are therefore framed by a border
(``BORDER_FRACTION`` of their larger side, edge pixels replicated) before detection, and the
results are shifted back. On AT&T this lifts TAR at FAR 1e-3 from 0.969 to 0.974. Larger
photos are not framed: it would cost time (a 640x480 frame would grow to 960x800) where a
face rarely touches the edge.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared import weights
from shared.errors import WeightsError

log = logging.getLogger(__name__)

YUNET_MODEL = "yunet"
YUNET_FILENAME = "yunet_s_640_640.onnx"
HAAR_FILENAME = "haarcascade_frontalface_default.xml"

BORDER_FRACTION = 0.25
FRAMED_MAX_SIDE = 320
SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
# YuNet's cost grows with the pixels it sees (here 15 ms at 640x480, 5 ms at 320x240), so
# larger images are shrunk to this longer side for detection only; landmarks are mapped back
# and the chip is cut from the full-resolution image. A face at a door fills much of the
# frame, far above YuNet's ~10 px minimum at this scale.
MAX_DETECTION_SIDE = 320

# YuNet's landmarks as fractions of a Haar box (x from its left, y from its top), in YuNet
# order: eye on the image's left, eye on the image's right, nose tip, mouth corner on the
# image's left, mouth corner on the image's right. The mean over the 403 AT&T and Happy House
# images where both detectors found the face (spread about 0.02 to 0.06 of the box).
HAAR_LANDMARKS_IN_BOX = np.array(
    [[0.299, 0.398], [0.682, 0.396], [0.490, 0.601], [0.336, 0.754], [0.660, 0.756]]
)


@dataclass(frozen=True)
class Face:
    """One detected face, in the original image's pixels.

    ``box`` is ``[x1, y1, x2, y2]``; ``landmarks`` is (5, 2) in YuNet's order (see
    ``HAAR_LANDMARKS_IN_BOX``); ``score`` is YuNet's confidence (1.0 for a Haar face, which
    has none).
    """

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def size(self) -> float:
        """The shorter side of the box: what limits how much detail the embedder gets."""
        return float(min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


class FaceDetector:
    """Finds faces in RGB uint8 images; create once, call ``detect`` per image."""

    def __init__(self, model_path: Path | None = None, *, score_threshold: float = SCORE_THRESHOLD):
        self.score_threshold = score_threshold
        self._yunet = None
        self._haar = None
        try:
            path = weights.resolve_file(YUNET_MODEL, YUNET_FILENAME, model_path)
            # The input size is set per image in ``detect``.
            self._yunet = cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), score_threshold, NMS_THRESHOLD, 5000
            )
        except WeightsError as err:
            if model_path is not None:
                raise
            log.warning("warning: YuNet face detector unavailable (%s); using Haar cascade", err)
            self._haar = cv2.CascadeClassifier(cv2.data.haarcascades + HAAR_FILENAME)

    @property
    def name(self) -> str:
        return "yunet" if self._yunet is not None else "haar"

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """All faces in ``rgb`` (HxWx3 uint8), highest score first."""
        height, width = rgb.shape[:2]
        shrink = min(1.0, MAX_DETECTION_SIDE / max(height, width))
        small = rgb
        if shrink < 1.0:
            size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
            small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        longest = max(height, width)
        border = round(BORDER_FRACTION * longest) if longest <= FRAMED_MAX_SIDE else 0
        framed = cv2.copyMakeBorder(small, border, border, border, border, cv2.BORDER_REPLICATE)
        bgr = cv2.cvtColor(framed, cv2.COLOR_RGB2BGR)
        if self._yunet is not None:
            boxes, landmarks, scores = self._detect_yunet(bgr)
        else:
            boxes, landmarks, scores = self._detect_haar(bgr)
        # Back from the framed, shrunk image to the original's pixels.
        boxes = (boxes - border) / shrink
        landmarks = (landmarks - border) / shrink
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
        order = np.argsort(-scores, kind="stable")
        return [Face(boxes[i], landmarks[i], float(scores[i])) for i in order]

    def _detect_yunet(self, bgr: np.ndarray):
        self._yunet.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, rows = self._yunet.detect(bgr)
        if rows is None:
            rows = np.zeros((0, 15), np.float32)
        rows = rows.astype(np.float64)
        x, y, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
        boxes = np.stack([x, y, x + w, y + h], axis=1)
        return boxes, rows[:, 4:14].reshape(-1, 5, 2), rows[:, 14]

    def _detect_haar(self, bgr: np.ndarray):
        grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
        found = self._haar.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5)
        xywh = np.asarray(found, np.float64).reshape(-1, 4)
        boxes = np.column_stack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]])
        landmarks = xywh[:, None, :2] + HAAR_LANDMARKS_IN_BOX[None] * xywh[:, None, 2:]
        return boxes, landmarks, np.ones(len(boxes))
