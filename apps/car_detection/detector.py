"""The detector ``detect-cars`` runs: a Darknet model, its class names and the user's thresholds.

``load_detector`` turns command-line choices into a ready ``YoloDetector``, whose ``detect``
takes a batch of RGB frames and returns ``results.Detection`` lists: the pipeline's currency.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from apps.car_detection.catalogue import load_model_and_names, select_classes
from apps.car_detection.decode import DEFAULT_CONF, DEFAULT_IOU, DEFAULT_MAX_DET, Network, detect
from apps.car_detection.results import Detection
from shared.errors import InputError


class YoloDetector:
    """Frames in, detections out: score = objectness x class probability, then per-class NMS.

    One label per box (its best class) unless ``multi_label``: see ``decode.select_detections``.
    """

    def __init__(
        self,
        network: Network,
        names: list[str],
        conf: float = DEFAULT_CONF,
        iou: float = DEFAULT_IOU,
        max_det: int | None = DEFAULT_MAX_DET,
        classes: Sequence[int] | None = None,
        multi_label: bool = False,
    ) -> None:
        if not 0.0 <= conf < 1.0:
            raise InputError(f"--conf must be in [0, 1), got {conf}")
        if not 0.0 < iou <= 1.0:
            raise InputError(f"--iou must be in (0, 1], got {iou}")
        if max_det is not None and max_det < 1:
            raise InputError(f"--max-det must be at least 1, got {max_det}")
        self.network = network
        self.names = names
        self.conf = conf
        self.iou = iou
        self.max_det = max_det
        self.classes = classes
        self.multi_label = multi_label

    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        found = detect(
            self.network,
            frames,
            self.conf,
            self.iou,
            self.classes,
            self.max_det,
            multi_label=self.multi_label,
        )
        return [
            [
                Detection(self.names[class_id], int(class_id), float(score), tuple(map(float, box)))
                for box, score, class_id in zip(
                    image.boxes, image.scores, image.class_ids, strict=True
                )
            ]
            for image in found
        ]


def load_detector(
    model: str | None = None,
    cfg: Path | str | None = None,
    weights: Path | str | None = None,
    names: Path | str | None = None,
    size: int | None = None,
    conf: float = DEFAULT_CONF,
    iou: float = DEFAULT_IOU,
    max_det: int | None = DEFAULT_MAX_DET,
    classes: str = "vehicles",
    multi_label: bool = False,
    runtime: str | None = None,
) -> YoloDetector:
    """A detector from a catalogue model (default Yolo-Fastest-1.1-xl) or own cfg/weights,
    on ``runtime`` (``openvino`` or ``tensorflow``; None: OpenVINO where it works)."""
    network, labels = load_model_and_names(model, cfg, weights, names, size, runtime)
    return YoloDetector(
        network, labels, conf, iou, max_det, select_classes(classes, labels), multi_label
    )
