"""How well ``detect-cars --track`` follows the labelled vehicles of a sequence.

Two label formats are read, told apart by their content:

- MOTChallenge ``gt.txt``: comma-separated ``frame, id, left, top, width, height, consider,
  class, visibility`` with frames counted from 1 (``img1/000001.jpg`` is frame 1). Rows with
  ``consider`` 0 are regions to ignore; ``classes`` keeps only the given class numbers.
- KITTI tracking ``label_02/NNNN.txt``: space-separated ``frame track_id type truncated
  occluded alpha left top right bottom ...`` with frames counted from 0. ``DontCare`` rows are
  regions to ignore; ``classes`` keeps those types (default: Car, Van, Truck).

Predictions lying mostly inside an ignored region (half of their area or more) are dropped
before scoring, as TrackEval drops those matched to distractors. The scores are
``shared.metrics.tracking_metrics``: MOTA, MOTP, IDF1, ID switches and HOTA.

``find_sequence`` finds a sequence's frames and labels in the two datasets' layouts
(``MOT17-13/img1`` + ``MOT17-13/gt/gt.txt``; ``image_02/0000/`` + ``label_02/0000.txt``), so
``detect-cars-eval --track`` needs only the sequence.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apps.car_detection.pipeline import Detector, detect_stream
from apps.car_detection.tracking import Tracking
from shared.boxes import box_area
from shared.errors import InputError
from shared.frames import Source
from shared.metrics import TrackedBoxes, TrackingMetrics, tracking_metrics

KITTI_VEHICLES = ("Car", "Van", "Truck")
IGNORED_SHARE = 0.5


@dataclass(frozen=True)
class TrackLabels:
    """A sequence's labelled tracks, the regions to ignore, and where its frame count starts."""

    tracks: TrackedBoxes
    ignore: TrackedBoxes  # ids meaningless
    first_frame: int
    format: str


def _tracked(rows: list[tuple[int, int, list[float]]]) -> TrackedBoxes:
    frames = np.array([row[0] for row in rows], dtype=np.int64)
    ids = np.array([row[1] for row in rows], dtype=np.int64)
    boxes = np.array([row[2] for row in rows], dtype=np.float64).reshape(-1, 4)
    return TrackedBoxes(frames, ids, boxes)


def _read_mot(path: Path, lines: list[str], classes: Iterable[str] | None) -> TrackLabels:
    wanted = None if classes is None else {int(value) for value in classes}
    kept, ignored = [], []
    for number, line in enumerate(lines, start=1):
        fields = [field.strip() for field in line.split(",")]
        try:
            frame, track = int(float(fields[0])), int(float(fields[1]))
            left, top, width, height = (float(value) for value in fields[2:6])
            consider = float(fields[6]) if len(fields) > 6 else 1.0
            label = int(float(fields[7])) if len(fields) > 7 else None
        except (ValueError, IndexError):
            raise InputError(
                f"{path}:{number}: not a MOTChallenge row (frame,id,left,top,width,height,...): "
                f"{line!r}"
            ) from None
        box = [left, top, left + width, top + height]
        if consider == 0:
            ignored.append((frame, 0, box))
        elif wanted is None or label in wanted:
            kept.append((frame, track, box))
        else:
            ignored.append((frame, 0, box))
    return TrackLabels(_tracked(kept), _tracked(ignored), 1, "mot")


def _read_kitti(path: Path, lines: list[str], classes: Iterable[str] | None) -> TrackLabels:
    wanted = set(KITTI_VEHICLES if classes is None else classes)
    kept, ignored = [], []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        try:
            frame, track, kind = int(fields[0]), int(fields[1]), fields[2]
            box = [float(value) for value in fields[6:10]]
        except (ValueError, IndexError):
            raise InputError(
                f"{path}:{number}: not a KITTI tracking row "
                f"(frame track_id type truncated occluded alpha left top right bottom ...): "
                f"{line!r}"
            ) from None
        if len(box) != 4:
            raise InputError(f"{path}:{number}: a KITTI row needs four box values: {line!r}")
        if kind in wanted and track >= 0:
            kept.append((frame, track, box))
        elif kind == "DontCare":
            ignored.append((frame, 0, box))
    return TrackLabels(_tracked(kept), _tracked(ignored), 0, "kitti")


def read_track_labels(path: Path | str, classes: Iterable[str] | None = None) -> TrackLabels:
    """A MOTChallenge ``gt.txt`` or a KITTI tracking label file (told apart by commas)."""
    path = Path(path)
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read tracking labels ({error})") from None
    if not lines:
        raise InputError(f"{path}: holds no labelled rows")
    reader = _read_mot if "," in lines[0] else _read_kitti
    labels = reader(path, lines, classes)
    if not labels.tracks.frames.size:
        raise InputError(f"{path}: no labelled object of the chosen classes")
    return labels


def find_sequence(data: Path | str, labels: Path | str | None = None) -> tuple[str, Path]:
    """The frames to read (what ``open_source`` takes) and the label file of sequence ``data``.

    ``data`` is a video, a folder of frames or a MOTChallenge sequence folder (its ``img1/``
    is read); ``labels`` given wins, else they are found where MOTChallenge (``gt/gt.txt``)
    or KITTI tracking (``image_02/NNNN`` -> ``label_02/NNNN.txt``) keep them.
    """
    data = Path(data)
    if not data.exists():
        raise InputError(f"{data}: no such video or folder of frames")
    frames = data / "img1" if (data / "img1").is_dir() else data
    if labels is not None:
        return str(frames), Path(labels)
    candidates = [data / "gt" / "gt.txt"]
    if data.parent.name == "image_02":
        candidates.append(data.parent.parent / "label_02" / f"{data.name}.txt")
    for candidate in candidates:
        if candidate.is_file():
            return str(frames), candidate
    raise InputError(
        f"{data}: no tracking labels found (looked for "
        f"{' and '.join(str(c) for c in candidates)}); give the file with --labels"
    )


def _drop_ignored(predicted: TrackedBoxes, ignore: TrackedBoxes) -> TrackedBoxes:
    """Predictions with at least ``IGNORED_SHARE`` of their area inside an ignored region."""
    if not ignore.frames.size or not predicted.frames.size:
        return predicted
    keep = np.ones(predicted.frames.size, dtype=bool)
    for frame in np.intersect1d(predicted.frames, ignore.frames):
        rows = np.flatnonzero(predicted.frames == frame)
        regions = ignore.boxes[ignore.frames == frame]
        boxes = predicted.boxes[rows]
        top_left = np.maximum(boxes[:, None, :2], regions[None, :, :2])
        bottom_right = np.minimum(boxes[:, None, 2:], regions[None, :, 2:])
        inside = np.clip(bottom_right - top_left, 0, None).prod(axis=-1).max(axis=1)
        keep[rows] = inside < IGNORED_SHARE * np.maximum(box_area(boxes), 1e-9)
    return TrackedBoxes(predicted.frames[keep], predicted.ids[keep], predicted.boxes[keep])


def track_sequence(
    source: Source,
    detector: Detector,
    tracking: Tracking,
    first_frame: int = 0,
    batch: int = 8,
    on_frame: Callable[[], None] | None = None,
) -> TrackedBoxes:
    """Detect and track every frame of ``source``; rows numbered from ``first_frame``."""
    rows = []
    try:
        for frame, result, _ in tracking.follow(detect_stream(source.frames, detector, batch)):
            rows += [(frame.index + first_frame, d.track, list(d.box)) for d in result.detections]
            if on_frame is not None:
                on_frame()
    finally:
        source.close()
    return _tracked(rows)


def evaluate_tracking(
    source: Source,
    detector: Detector,
    labels: TrackLabels,
    tracking: Tracking | None = None,
    iou_threshold: float = 0.5,
    batch: int = 8,
    on_frame: Callable[[], None] | None = None,
) -> TrackingMetrics:
    """Run the detector and tracker over ``source`` and score them against ``labels``."""
    tracking = tracking or Tracking()
    predicted = track_sequence(source, detector, tracking, labels.first_frame, batch, on_frame)
    return tracking_metrics(labels.tracks, _drop_ignored(predicted, labels.ignore), iou_threshold)


def render(metrics: TrackingMetrics) -> str:
    """The scores as two lines a person reads at a glance."""
    return (
        f"MOTA {metrics.mota:.3f}  IDF1 {metrics.idf1:.3f}  HOTA {metrics.hota:.3f} "
        f"(DetA {metrics.deta:.3f}, AssA {metrics.assa:.3f})  MOTP {metrics.motp:.3f}\n"
        f"{metrics.matches} of {metrics.num_truth} labelled boxes found in "
        f"{metrics.num_frames} frames: {metrics.misses} missed, {metrics.false_positives} "
        f"false positives, {metrics.id_switches} id switches"
    )
