"""Vehicle identities across frames: a ByteTrack-style multi-object tracker.

ByteTrack (Zhang et al., ECCV 2022) associates detections with tracks by IoU in two stages:
confident detections first, against every live track; then the weak ones (an occluded or
blurred car the detector barely sees) against the tracks still unmatched, which keeps a track
through a bad frame instead of losing it. Each track's box is predicted into the next frame by a
constant-velocity Kalman filter over (centre x, centre y, aspect ratio, height), DeepSORT's
state, with noise proportional to the box height. Assignment is ``scipy``'s Hungarian solver
and the filter is ``filterpy``'s; this module only holds the bookkeeping.

A track is *tentative* until it has been matched in ``min_hits`` consecutive updates; then it
gets the next id (ids start at 1 and have no gaps) and its detections are reported. A track
that stops matching is *lost* and still competes for detections for ``lost_seconds`` (30
frames at 30 frames/s, ByteTrack's buffer, scaled to the source's rate as ByteTrack does),
so a car hidden behind a truck for a second comes back with its id; after that it ends.

Before association, boxes overlapping a better one by more than ``duplicate_iou`` are
dropped whatever their class: the detector's per-class NMS keeps a "car" and a "truck" box
on one van, and each would otherwise start a track. For the same reason a box nested in a box
already matched in that frame, or holding one (Yolo-Fastest often adds one on the front or
the back half of a near car), starts no track.

The tracker is fed only the frames the detector ran on (every ``--vid-stride``-th one) with
their source frame numbers: ages are measured in source frames, so settings mean the same
time span whatever the stride.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2
import numpy as np

from apps.car_detection.results import Detection
from shared.boxes import box_area, iou
from shared.errors import InputError

if TYPE_CHECKING:
    from filterpy.kalman import KalmanFilter

# DeepSORT's noise model: standard deviations are these fractions of the box height.
_POSITION_NOISE = 1.0 / 20
_VELOCITY_NOISE = 1.0 / 160


@dataclass(frozen=True)
class TrackerSettings:
    """What the tracker accepts, when tracks begin and when they end.

    Chosen on the road clips in ``../shared/data/cars/video`` (see the README's tracking
    section); the detector runs at ``low`` so that the second association stage has the
    weak detections to work with.
    """

    high: float = 0.4
    """Detections at or above this score are associated first and may start tracks."""
    low: float = 0.1
    """Detections between ``low`` and ``high`` can only continue a track that exists."""
    birth: float = 0.5
    """A new track needs a detection at least this confident."""
    match_iou: float = 0.2
    """Least IoU between a track's predicted box and a confident detection."""
    low_match_iou: float = 0.5
    """Least IoU for a weak detection (stricter: weak boxes are often spurious)."""
    min_hits: int = 3
    """Consecutive matched updates before a tentative track is confirmed and reported."""
    lost_seconds: float = 1.0
    """How long a lost track is kept waiting for its object to reappear."""
    duplicate_iou: float = 0.5
    """Class-agnostic NMS before association: a box overlapping a better one this much goes."""
    birth_overlap: float = 0.5
    """A detection nested in a box matched in the same frame, or holding one, by this share
    of the smaller box's area (a part of that vehicle, or a second box on it) starts no
    track."""
    trail: int = 30
    """Box centres remembered per track for drawing its trail."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.low <= self.high <= 1.0:
            raise InputError(f"tracker: need 0 <= low <= high <= 1, got {self.low}, {self.high}")
        if self.min_hits < 1 or self.lost_seconds < 0:
            raise InputError("tracker: min_hits must be >= 1 and lost_seconds >= 0")


def _measurement(box: Sequence[float]) -> np.ndarray:
    """``[x1, y1, x2, y2]`` as the filter's measurement (centre x, centre y, w / h, h)."""
    x1, y1, x2, y2 = box
    height = max(y2 - y1, 1e-6)
    return np.array([(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / height, height])


def _box(state: np.ndarray) -> np.ndarray:
    centre_x, centre_y, aspect, height = state[:4]
    half_w, half_h = aspect * height / 2, height / 2
    return np.array([centre_x - half_w, centre_y - half_h, centre_x + half_w, centre_y + half_h])


def _diagonal(stds: Sequence[float]) -> np.ndarray:
    return np.diag(np.square(stds))


@dataclass(eq=False)
class Track:
    """One object followed across frames."""

    filter: KalmanFilter  # filterpy.kalman.KalmanFilter
    first_frame: int
    last_frame: int
    detection: Detection
    id: int = 0  # 0 while tentative
    hits: int = 1
    seen: int = 1  # source frames it was seen in (a frame skipped by --vid-stride included)
    lost: bool = False
    label_scores: Counter = field(default_factory=Counter)
    trail: deque = field(default_factory=deque)

    @classmethod
    def start(cls, detection: Detection, frame: int, trail: int) -> Track:
        # Imported here, as scipy.optimize in _associate: filterpy loads scipy.stats, and the
        # two take 1-3 s, which only a run that tracks should pay (not `detect-cars --help`).
        from filterpy.kalman import KalmanFilter

        kf = KalmanFilter(dim_x=8, dim_z=4)
        kf.F = np.eye(8)
        kf.F[:4, 4:] = np.eye(4)  # one step per update: velocities are per inferred frame
        kf.H = np.eye(4, 8)
        measured = _measurement(detection.box)
        kf.x = np.concatenate([measured, np.zeros(4)])
        height = measured[3]
        position, velocity = 2 * _POSITION_NOISE * height, 10 * _VELOCITY_NOISE * height
        kf.P = _diagonal([position, position, 1e-2, position, velocity, velocity, 1e-5, velocity])
        track = cls(kf, frame, frame, detection, trail=deque(maxlen=trail))
        track._remember(detection)
        return track

    @property
    def box(self) -> np.ndarray:
        """The box the filter expects (after ``predict``) or has settled on (after ``update``)."""
        return _box(self.filter.x)

    @property
    def label(self) -> str:
        """The class this track was most confidently detected as, over its whole life."""
        return self.label_scores.most_common(1)[0][0]

    def predict(self) -> None:
        if self.lost:
            self.filter.x[7] = 0.0  # a lost box stops growing or shrinking (as ByteTrack)
        height = self.filter.x[3]
        position, velocity = _POSITION_NOISE * height, _VELOCITY_NOISE * height
        self.filter.predict(
            Q=_diagonal([position, position, 1e-2, position, velocity, velocity, 1e-5, velocity])
        )

    def update(self, detection: Detection, frame: int, step: int) -> None:
        """Take the detection matched in ``frame``, ``step`` frames after the last update."""
        height = self.filter.x[3]
        position = _POSITION_NOISE * height
        self.filter.update(
            _measurement(detection.box), R=_diagonal([position, position, 1e-1, position])
        )
        self.detection = detection
        self.last_frame = frame
        self.seen += step
        self.lost = False
        self._remember(detection)

    def _remember(self, detection: Detection) -> None:
        self.label_scores[detection.label] += detection.score
        x1, y1, x2, y2 = detection.box
        self.trail.append(((x1 + x2) / 2, (y1 + y2) / 2))


def _associate(
    tracks: list[Track], detections: list[Detection], min_iou: float
) -> tuple[list[tuple[Track, Detection]], list[Track], list[Detection]]:
    """Pair tracks with detections maximising total IoU, every pair at least ``min_iou``."""
    if not tracks or not detections:
        return [], list(tracks), list(detections)
    from scipy.optimize import linear_sum_assignment  # see Track.start on import costs

    overlaps = iou(
        np.stack([track.box for track in tracks]),
        np.array([detection.box for detection in detections]),
    )
    rows, cols = linear_sum_assignment(overlaps, maximize=True)
    pairs = [(r, c) for r, c in zip(rows, cols, strict=True) if overlaps[r, c] >= min_iou]
    paired_rows = {r for r, _ in pairs}
    paired_cols = {c for _, c in pairs}
    return (
        [(tracks[r], detections[c]) for r, c in pairs],
        [track for index, track in enumerate(tracks) if index not in paired_rows],
        [detection for index, detection in enumerate(detections) if index not in paired_cols],
    )


def _nested(box: Sequence[float], others: list[Sequence[float]]) -> float:
    """How far ``box`` and one of ``others`` lie inside each other: the largest intersection
    over the smaller of the two areas (1.0: one box holds the other)."""
    if not others:
        return 0.0
    boxes = np.asarray(others, dtype=np.float64)
    x1, y1, x2, y2 = box
    widths = np.clip(np.minimum(boxes[:, 2], x2) - np.maximum(boxes[:, 0], x1), 0, None)
    heights = np.clip(np.minimum(boxes[:, 3], y2) - np.maximum(boxes[:, 1], y1), 0, None)
    smaller = np.minimum(box_area(boxes), (x2 - x1) * (y2 - y1))
    return float((widths * heights / np.maximum(smaller, 1e-9)).max())


class ByteTracker:
    """Feed it each inferred frame's detections in order; it returns them with track ids.

    ``update`` returns the detections of confirmed tracks matched in that frame, each with its
    ``track`` set; detections it cannot vouch for (a tentative track, a stray weak box) are
    left out. ``tracks`` holds every track ever confirmed, for the summary's unique counts.
    """

    def __init__(self, settings: TrackerSettings | None = None, fps: float | None = None) -> None:
        """``fps``: the source's frame rate (30 when unknown, as for a folder of images)."""
        self.settings = settings or TrackerSettings()
        rate = fps if fps and 0 < fps <= 1000 else 30.0
        self.max_age = max(1, round(self.settings.lost_seconds * rate))
        self.active: list[Track] = []  # confirmed, matched in the last update
        self.lost: list[Track] = []  # confirmed, waiting to reappear
        self.tentative: list[Track] = []
        self.tracks: list[Track] = []  # every confirmed track, in id order
        self.frame: int | None = None

    def update(self, frame: int, detections: Sequence[Detection]) -> list[Detection]:
        """Associate ``detections`` of source frame ``frame`` (increasing from call to call)."""
        if self.frame is not None and frame <= self.frame:
            raise ValueError(f"frames must increase: got {frame} after {self.frame}")
        step = 1 if self.frame is None else frame - self.frame
        self.frame = frame
        settings = self.settings
        if len(detections) > 1:
            # OpenCV's NMS: the same greedy rule as shared.boxes.nms, ten times faster here.
            boxes = np.array([d.box for d in detections], dtype=np.float64)
            boxes[:, 2:] -= boxes[:, :2]
            keep = cv2.dnn.NMSBoxes(
                boxes.tolist(), [d.score for d in detections], 0.0, settings.duplicate_iou
            )
            detections = [detections[index] for index in sorted(np.ravel(keep).tolist())]
        self.lost = [track for track in self.lost if frame - track.last_frame <= self.max_age]
        for track in (*self.active, *self.lost, *self.tentative):
            track.predict()
        strong = [d for d in detections if d.score >= settings.high]
        weak = [d for d in detections if settings.low <= d.score < settings.high]

        # 1. Confident detections against every confirmed track, lost ones included.
        pairs, unmatched, strong = _associate(
            [*self.active, *self.lost], strong, settings.match_iou
        )
        # 2. Weak detections against the tracks that were visible in the last update.
        still_active = [track for track in unmatched if not track.lost]
        weak_pairs, unmatched_active, _ = _associate(still_active, weak, settings.low_match_iou)
        pairs += weak_pairs
        for track, detection in pairs:
            track.update(detection, frame, step)
        for track in unmatched_active:
            track.lost = True
        # 3. Tentative tracks take what confident detections are left; unmatched ones end.
        born_pairs, _, strong = _associate(self.tentative, strong, settings.match_iou)
        for track, detection in born_pairs:
            track.update(detection, frame, step)
            track.hits += 1
        # 4. The rest may start tracks, unless they lie on a vehicle matched in this frame.
        taken = [detection.box for _, detection in (*pairs, *born_pairs)]
        candidates = [track for track, _ in born_pairs] + [
            Track.start(detection, frame, settings.trail)
            for detection in strong
            if detection.score >= settings.birth
            and _nested(detection.box, taken) < settings.birth_overlap
        ]
        confirmed = [track for track in candidates if track.hits >= settings.min_hits]
        self.tentative = [track for track in candidates if track.hits < settings.min_hits]
        for track in confirmed:
            track.id = len(self.tracks) + 1
            self.tracks.append(track)

        live = [*self.active, *self.lost]
        self.active = [track for track in live if not track.lost] + confirmed
        self.lost = [track for track in live if track.lost]
        # Every active track was matched in this frame.
        return [dataclasses.replace(track.detection, track=track.id) for track in self.active]

    def trails(self) -> dict[int, list[tuple[float, float]]]:
        """Recent box centres of the tracks visible now, by id."""
        return {track.id: list(track.trail) for track in self.active}

    def unique(self, min_frames: int = 1) -> dict[str, int]:
        """Tracks per class seen in at least ``min_frames`` source frames."""
        counts = Counter(track.label for track in self.tracks if track.seen >= min_frames)
        return dict(sorted(counts.items()))
