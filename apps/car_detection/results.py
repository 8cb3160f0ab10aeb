"""What detection produces, one object per frame, and how it renders itself.

Like ultralytics' ``Results``: a ``FrameResult`` turns itself into a JSON line, CSV
rows or an annotated image, so every sink (and a Python caller) sees the same data.
Boxes are ``[x1, y1, x2, y2]`` in the original frame's pixels.
"""

from __future__ import annotations

import functools
import json
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from apps.car_detection.catalogue import read_class_names
from shared.images import draw_boxes, draw_polyline, track_colour

CSV_HEADER = ("frame", "time", "image", "label", "class_id", "score", "x1", "y1", "x2", "y2")
TRACKED_CSV_HEADER = (*CSV_HEADER, "track")
"""With ``--track``: the track id in a last column."""


@functools.cache
def _coco_ids() -> dict[str, int]:
    return {name: index for index, name in enumerate(read_class_names())}


def colour_key(label: str) -> int | str:
    """What a class's colour follows: its COCO id where it is a COCO class, else its name.

    So a car is drawn in one colour by every model, the pretrained one (car = class 2) and
    one fine-tuned on four vehicle classes (car = class 0) alike.
    """
    return _coco_ids().get(label, label)


@dataclass(frozen=True)
class Detection:
    """One detected object."""

    label: str
    class_id: int
    score: float
    box: tuple[float, float, float, float]
    track: int | None = None
    """The id ``--track`` gave the object (``tracker.ByteTracker``); None without tracking."""

    def to_dict(self) -> dict:
        row = {
            "label": self.label,
            "class_id": self.class_id,
            "score": round(self.score, 4),
            "box": [round(value, 1) for value in self.box],
        }
        if self.track is not None:
            row["track"] = self.track
        return row


@dataclass(frozen=True)
class CountLineView:
    """A ``--count-line`` as drawn on a frame: its ends in pixels and the crossings so far."""

    start: tuple[float, float]
    end: tuple[float, float]
    totals: dict[str, int]


@dataclass
class FrameResult:
    """The detections of one frame (of a video) or one image (of a folder).

    With ``--track``, ``trails`` holds the recent box centres of each visible track and
    ``count_line`` the counting line; both are drawn, neither goes into JSON or CSV.
    """

    frame: int
    time: float | None
    image: str | None
    detections: list[Detection] = field(default_factory=list)
    trails: dict[int, list[tuple[float, float]]] = field(default_factory=dict)
    count_line: CountLineView | None = None

    def to_dict(self) -> dict:
        return {
            "frame": self.frame,
            "time": None if self.time is None else round(self.time, 3),
            "image": self.image,
            "detections": [detection.to_dict() for detection in self.detections],
        }

    def to_json(self) -> str:
        """One JSON line (no trailing newline)."""
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def csv_rows(self, tracked: bool = False) -> list[tuple]:
        """One row per detection, in the order of ``CSV_HEADER`` (``TRACKED_CSV_HEADER``)."""
        time = "" if self.time is None else round(self.time, 3)
        return [
            (
                self.frame,
                time,
                self.image or "",
                detection.label,
                detection.class_id,
                round(detection.score, 4),
                *(round(value, 1) for value in detection.box),
                *((detection.track,) if tracked else ()),
            )
            for detection in self.detections
        ]

    def counts(self) -> Counter[str]:
        """How many objects of each label this frame holds."""
        return Counter(detection.label for detection in self.detections)

    def draw(self, rgb: np.ndarray) -> np.ndarray:
        """A copy of ``rgb`` with this frame's boxes, labels and scores drawn on it
        (with ``--track``: ``#id`` before the label, trails and the counting line).

        The best detections are drawn last, on top; each class keeps its colour.
        """
        weakest_first = sorted(self.detections, key=lambda detection: detection.score)
        canvas = draw_boxes(
            rgb,
            [detection.box for detection in weakest_first],
            [
                ("" if detection.track is None else f"#{detection.track} ")
                + f"{detection.label} {detection.score:.2f}"
                for detection in weakest_first
            ],
            colour_keys=[colour_key(detection.label) for detection in weakest_first],
        )
        for track, points in self.trails.items():
            draw_polyline(canvas, points, track_colour(track))
        if self.count_line is not None:
            line = self.count_line
            totals = "  ".join(f"{name} {count}" for name, count in line.totals.items())
            draw_polyline(canvas, [line.start, line.end], (255, 255, 255), caption=totals)
        return canvas
