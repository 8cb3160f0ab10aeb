"""Face detection: YuNet (a box, 5 landmarks and a score per face), Haar cascade as fallback.

YuNet (the catalogue's ``yunet_s_640_640.onnx``) runs on OpenVINO where it is installed and
through OpenCV's ``cv2.FaceDetectorYN`` otherwise (or with ``runtime="tensorflow"``, which has no
YuNet of its own): the same network, the same decoding of its heads into boxes, landmarks and
scores, and the same non-maximum suppression, so the two give the same faces (to 1e-3 px,
``test_face_detection.py``); OpenVINO in 4.1-4.9 ms a 320x240 photo on one core against
OpenCV's 5.6-6.3 ms. Where the file cannot be resolved, OpenCV's own frontal-face Haar
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
from shared.runtime import import_openvino

log = logging.getLogger(__name__)

YUNET_MODEL = "yunet"
YUNET_FILENAME = "yunet_s_640_640.onnx"
HAAR_FILENAME = "haarcascade_frontalface_default.xml"

BORDER_FRACTION = 0.25
FRAMED_MAX_SIDE = 320
SCORE_THRESHOLD = 0.6
NMS_THRESHOLD = 0.3
TOP_K = 5000
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


class OpenVinoYuNet:
    """YuNet on OpenVINO, answering as ``cv2.FaceDetectorYN.detect`` does: rows of
    ``[x, y, w, h, 5 landmarks (x, y), score]`` after its non-maximum suppression.

    As OpenCV does, the image is put in the top-left corner of a zero canvas whose sides are
    multiples of 32 (YuNet's coarsest stride); one network is compiled per canvas size (a camera
    or a folder of photos brings few), static shapes being faster than a dynamic one here.
    Compiling takes 0.29 s; OpenVINO's blob cache (in ``shared.weights.cache_dir()``) makes it
    0.10 s in later runs.
    """

    STRIDES = (8, 16, 32)
    KEPT_NETWORKS = 16  # compiled canvas sizes held in memory (a few MB each)

    def __init__(self, path: Path, score_threshold: float, nms_threshold: float, top_k: int):
        openvino = import_openvino()
        self._core = openvino.Core()
        self._core.set_property({"CACHE_DIR": str(weights.cache_dir() / "compiled" / "yunet")})
        self._model = self._core.read_model(str(path))  # an unreadable file fails here
        self._networks: dict[tuple[int, int], tuple] = {}
        self._cells: dict[tuple[int, int, int], np.ndarray] = {}
        self.score_threshold, self.nms_threshold, self.top_k = score_threshold, nms_threshold, top_k

    def _network(self, height: int, width: int):
        if (height, width) not in self._networks:
            if len(self._networks) == self.KEPT_NETWORKS:  # photos of many shapes: keep the last
                del self._networks[next(iter(self._networks))]
            model = self._model.clone()
            model.reshape({model.inputs[0]: [1, 3, height, width]})
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
            compiled = self._core.compile_model(model, "CPU", config)
            names = [output.get_names() for output in compiled.outputs]
            self._networks[(height, width)] = (compiled.create_infer_request(), names)
        return self._networks[(height, width)]

    def _grid(self, rows: int, cols: int, stride: int) -> np.ndarray:
        """(column, row) of every cell of a stride's output, in its order."""
        key = (rows, cols, stride)
        if key not in self._cells:
            row, col = np.mgrid[:rows, :cols]
            self._cells[key] = np.stack([col.ravel(), row.ravel()], axis=1).astype(np.float32)
        return self._cells[key]

    def detect(self, bgr: np.ndarray) -> np.ndarray:
        height, width = bgr.shape[:2]
        padded_height, padded_width = -(-height // 32) * 32, -(-width // 32) * 32
        request, names = self._network(padded_height, padded_width)
        # The image goes straight into the request's own input (no canvas of ours to copy in);
        # the margins are cleared every time, as another image may have had this canvas size.
        (canvas,) = request.get_input_tensor().data
        canvas[:, :height, :width] = bgr.transpose(2, 0, 1)
        canvas[:, height:] = 0
        canvas[:, :height, width:] = 0
        request.infer()
        heads = {}
        for index, aliases in enumerate(names):
            for name in aliases:
                heads[name] = request.get_output_tensor(index).data
        rows = [self._decode(heads, stride, padded_height, padded_width) for stride in self.STRIDES]
        rows = np.concatenate(rows)
        kept = cv2.dnn.NMSBoxes(
            rows[:, :4].tolist(),
            rows[:, 14].tolist(),
            self.score_threshold,
            self.nms_threshold,
            top_k=self.top_k,
        )
        return rows[np.asarray(kept, int).ravel()]

    def _decode(self, heads: dict, stride: int, height: int, width: int) -> np.ndarray:
        """One stride's cells over the score threshold as rows (OpenCV's decoding: the score is
        the geometric mean of the class and objectness scores, centre and landmarks are
        offsets from the cell in strides, width and height exp of the outputs in strides)."""
        classes = np.clip(heads[f"cls_{stride}"].reshape(-1), 0, 1)
        objects = np.clip(heads[f"obj_{stride}"].reshape(-1), 0, 1)
        scores = np.sqrt(classes * objects)
        keep = scores > self.score_threshold
        cells = self._grid(height // stride, width // stride, stride)[keep]
        boxes = heads[f"bbox_{stride}"].reshape(-1, 4)[keep]
        points = heads[f"kps_{stride}"].reshape(-1, 5, 2)[keep]
        centres = (cells + boxes[:, :2]) * stride
        sizes = np.exp(boxes[:, 2:]) * stride
        landmarks = ((points + cells[:, None]) * stride).reshape(-1, 10)
        return np.concatenate([centres - sizes / 2, sizes, landmarks, scores[keep, None]], axis=1)


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

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        score_threshold: float = SCORE_THRESHOLD,
        runtime: str | None = None,
    ):
        """``runtime``: ``openvino`` (the default where it is installed) or anything else for
        OpenCV's YuNet."""
        self.score_threshold = score_threshold
        self._yunet = None
        self._haar = None
        try:
            path = weights.resolve_file(YUNET_MODEL, YUNET_FILENAME, model_path)
            self._yunet = self._open_yunet(path, runtime)
        except WeightsError as err:
            if model_path is not None:
                raise
            log.warning("warning: YuNet face detector unavailable (%s); using Haar cascade", err)
            self._haar = cv2.CascadeClassifier(cv2.data.haarcascades + HAAR_FILENAME)

    def _open_yunet(self, path: Path, runtime: str | None):
        if runtime in (None, "openvino"):
            try:
                return OpenVinoYuNet(path, self.score_threshold, NMS_THRESHOLD, TOP_K)
            except ImportError:
                pass  # OpenVINO is not installed: OpenCV runs the same network
            except RuntimeError as err:  # OpenVINO cannot read the file
                raise WeightsError(f"{path}: not a YuNet model OpenVINO can read") from err
        try:
            # The input size is set per image in ``detect``.
            return cv2.FaceDetectorYN.create(
                str(path), "", (320, 320), self.score_threshold, NMS_THRESHOLD, TOP_K
            )
        except cv2.error as err:
            raise WeightsError(f"{path}: not a YuNet model OpenCV can read") from err

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
        if isinstance(self._yunet, OpenVinoYuNet):
            rows = self._yunet.detect(bgr)
        else:
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
