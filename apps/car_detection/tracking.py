"""``detect-cars --track``: ids on the detections, trails, unique counts and a counting line.

``Tracking.follow`` sits between the detector and the sinks in the pipeline: it feeds each
inferred frame to the ``ByteTracker``, gives every frame (skipped ones too, with
``--vid-stride``) the tracked detections, the tracks' trails and the counting line to draw, and
keeps what the summary reports: unique vehicles per class and line crossings per direction.

The counting line is ``x1,y1,x2,y2`` in pixels, or in fractions of the frame when all four are
between 0 and 1 (``0,0.6,1,0.6`` is a horizontal line at 60 % of the height). A track is
counted once, the first time the centre of its box moves from one side of the line to the
other within the line's extent; the direction is named after the way it moved ("down",
"up", "left", "right", whichever is nearest the line's normal).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from apps.car_detection.results import CountLineView, FrameResult
from apps.car_detection.tracker import ByteTracker, TrackerSettings
from shared.errors import InputError

if TYPE_CHECKING:
    from shared.frames import Frame

MIN_TRACK_FRAMES = 10
"""A track counts as a vehicle in the summary if it was seen in this many source frames (K)."""

Point = tuple[float, float]


@dataclass(frozen=True)
class CountLine:
    """A ``--count-line`` as given: four numbers, in pixels or fractions of the frame."""

    values: tuple[float, float, float, float]

    @property
    def fractions(self) -> bool:
        return all(0.0 <= value <= 1.0 for value in self.values)

    @classmethod
    def parse(cls, text: str) -> CountLine:
        """``"x1,y1,x2,y2"``; a clear ``InputError`` naming ``--count-line`` otherwise."""
        usage = "expected x1,y1,x2,y2 in pixels or as fractions of the frame (0 to 1)"
        try:
            values = tuple(float(part) for part in text.split(","))
        except ValueError:
            raise InputError(f"--count-line {text!r}: {usage}") from None
        if len(values) != 4 or not all(math.isfinite(value) for value in values):
            raise InputError(f"--count-line {text!r}: {usage}")
        if min(values) < 0:
            raise InputError(f"--count-line {text!r}: coordinates cannot be negative")
        if values[:2] == values[2:]:
            raise InputError(f"--count-line {text!r}: the two ends are the same point")
        return cls(values)  # type: ignore[arg-type]

    def in_pixels(self, width: int, height: int) -> tuple[Point, Point]:
        """The line's ends in a ``width`` x ``height`` frame."""
        x1, y1, x2, y2 = self.values
        if self.fractions:
            x1, x2 = x1 * width, x2 * width
            y1, y2 = y1 * height, y2 * height
        elif max(x1, x2) > width or max(y1, y2) > height:
            raise InputError(
                f"--count-line {','.join(f'{v:g}' for v in self.values)}: outside the "
                f"{width}x{height} frame"
            )
        return (x1, y1), (x2, y2)


def _side(start: Point, end: Point, point: Point) -> float:
    """Positive on one side of the line through ``start`` and ``end``, negative on the other."""
    return (end[0] - start[0]) * (point[1] - start[1]) - (end[1] - start[1]) * (point[0] - start[0])


def _direction_names(start: Point, end: Point) -> tuple[str, str]:
    """Names for crossing towards the positive side and towards the negative side."""
    normal_x, normal_y = -(end[1] - start[1]), end[0] - start[0]  # points to the positive side
    if abs(normal_x) > abs(normal_y):
        return ("right", "left") if normal_x > 0 else ("left", "right")
    return ("down", "up") if normal_y > 0 else ("up", "down")  # image y grows downwards


class LineCounter:
    """Which tracks crossed a line segment, and which way, from their successive centres."""

    def __init__(self, start: Point, end: Point) -> None:
        self.start, self.end = start, end
        self.directions = _direction_names(start, end)
        self._last: dict[int, Point] = {}
        self.crossed: dict[int, str] = {}  # track id -> direction, in crossing order

    def update(self, centres: dict[int, Point]) -> None:
        """Take the centres of the tracks seen in one frame."""
        for track, centre in centres.items():
            previous = self._last.get(track)
            self._last[track] = centre
            if previous is None or track in self.crossed:
                continue
            before, after = (
                _side(self.start, self.end, previous),
                _side(self.start, self.end, centre),
            )
            if (before < 0) == (after < 0):
                continue  # same side (a centre on the line counts as the positive side)
            # The motion crosses the infinite line; count it if it passes between the ends.
            if (_side(previous, centre, self.start) < 0) == (_side(previous, centre, self.end) < 0):
                continue
            self.crossed[track] = self.directions[0] if after >= 0 else self.directions[1]

    def totals(self) -> dict[str, int]:
        counts = Counter(self.crossed.values())
        return {direction: counts[direction] for direction in self.directions}


@dataclass
class Tracking:
    """The tracking stage of a ``detect-cars`` run (``run(..., tracking=Tracking())``)."""

    settings: TrackerSettings = field(default_factory=TrackerSettings)
    line: CountLine | None = None
    min_frames: int = MIN_TRACK_FRAMES
    fps: float | None = None  # the source's frame rate; lost tracks wait a time, not frames

    def __post_init__(self) -> None:
        if self.min_frames < 1:
            raise InputError(f"--min-track-frames must be at least 1, got {self.min_frames}")
        self.tracker = ByteTracker(self.settings, self.fps)
        self.counter: LineCounter | None = None

    def follow(self, stream: Iterator[tuple[Frame, FrameResult, bool]]):
        """``detect_stream``'s frames with tracked detections, trails and the line to draw."""
        tracked: list = []
        for frame, result, inferred in stream:
            if self.line is not None and self.counter is None:
                height, width = frame.rgb.shape[:2]
                self.counter = LineCounter(*self.line.in_pixels(width, height))
            if inferred:
                tracked = self.tracker.update(frame.index, result.detections)
                if self.counter is not None:
                    self.counter.update({t.id: t.trail[-1] for t in self.tracker.active})
            yield (
                frame,
                FrameResult(
                    frame.index,
                    frame.time,
                    frame.image,
                    list(tracked),
                    trails=self.tracker.trails(),
                    count_line=self._line_view(),
                ),
                inferred,
            )

    def _line_view(self) -> CountLineView | None:
        if self.counter is None:
            return None
        return CountLineView(self.counter.start, self.counter.end, self.counter.totals())

    def summary(self) -> dict:
        """Unique vehicles per class (tracks of at least ``min_frames``) and line crossings.

        A crossing is filed under its track's class as decided over the whole track (the
        class it was most confidently detected as), the class the unique counts use too.
        """
        tracker = self.tracker
        result: dict = {
            "unique": tracker.unique(self.min_frames),
            "min_track_frames": self.min_frames,
            "tracks": len(tracker.tracks),
        }
        if self.counter is not None:
            labels = {track.id: track.label for track in tracker.tracks}
            crossings: dict[str, dict[str, int]] = {}
            for track, direction in self.counter.crossed.items():
                per_class = crossings.setdefault(
                    labels[track], dict.fromkeys(self.counter.directions, 0)
                )
                per_class[direction] += 1
            result["line"] = {
                "from": [round(value, 1) for value in self.counter.start],
                "to": [round(value, 1) for value in self.counter.end],
                "crossings": dict(sorted(crossings.items())),
                "total": self.counter.totals(),
            }
        return result
