"""From a source to frame results: read, batch, detect, hand to sinks, summarise.

Sources are a video file, a camera index, a stream URL, one image or a folder of
images (``open_source``). Frames are decoded ahead in a background thread and
batched for the detector; results go to sinks in a background writer, so
decoding, inference and encoding overlap. ``detect_stream`` yields one
``FrameResult`` per processed frame for Python callers; ``run`` drives the sinks
and returns a ``Summary``, which is what ``detect-cars`` prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from apps.car_detection.results import Detection, FrameResult
from apps.car_detection.sinks import Sink
from apps.car_detection.tracking import Tracking
from shared.errors import InputError
from shared.frames import BackgroundWriter, Frame, Source, open_source

# The Python API the README shows: ``run(open_source(path), detector, sinks)`` from this module.
__all__ = ["detect_stream", "open_source", "run"]


class Detector(Protocol):
    def detect(self, frames: Sequence[np.ndarray]) -> list[list[Detection]]:
        """Detections for each RGB uint8 frame, boxes in that frame's pixels."""


def detect_stream(
    frames: Iterator[Frame], detector: Detector, batch: int = 8, vid_stride: int = 1
) -> Iterator[tuple[Frame, FrameResult, bool]]:
    """Yield ``(frame, result, inferred)`` in frame order.

    Every ``vid_stride``-th frame is inferred, ``batch`` of them at a time; the
    frames in between carry the most recent result (``inferred`` False), so an
    annotated video keeps every frame and its boxes.
    """
    if batch < 1 or vid_stride < 1:
        raise InputError(f"--batch and --vid-stride must be at least 1 (got {batch}, {vid_stride})")
    waiting: list[Frame] = []
    to_infer: list[Frame] = []
    last = None

    def flush() -> Iterator[tuple[Frame, FrameResult, bool]]:
        nonlocal last
        detections = detector.detect([frame.rgb for frame in to_infer]) if to_infer else []
        found = {frame.index: found for frame, found in zip(to_infer, detections, strict=True)}
        for frame in waiting:
            inferred = frame.index in found
            if inferred:
                last = found[frame.index]
            yield (
                frame,
                FrameResult(frame.index, frame.time, frame.image, list(last or [])),
                inferred,
            )
        waiting.clear()
        to_infer.clear()

    for frame in frames:
        waiting.append(frame)
        if frame.index % vid_stride == 0:
            to_infer.append(frame)
            if len(to_infer) == batch:
                yield from flush()
    yield from flush()


@dataclass
class Summary:
    """What a run did: the figures ``detect-cars`` prints (``--json`` gives them as is)."""

    source: str
    frames: int = 0
    inferred_frames: int = 0
    seconds: float = 0.0
    detections: dict[str, int] = field(default_factory=dict)
    most_at_once: dict[str, dict[str, int]] = field(default_factory=dict)
    interrupted: bool = False
    outputs: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    tracking: dict | None = None  # ``Tracking.summary()`` with --track

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def add(self, result: FrameResult) -> None:
        counts = result.counts()
        for label, count in counts.items():
            self.detections[label] = self.detections.get(label, 0) + count
            best = self.most_at_once.get(label)
            if best is None or count > best["count"]:
                # A folder's frames are its images: name the file, not "frame 3".
                where = {"image": result.image} if result.image is not None else {}
                self.most_at_once[label] = {"count": count, "frame": result.frame, **where}

    def to_dict(self) -> dict:
        return {
            "source": self.source,
            "frames": self.frames,
            "inferred_frames": self.inferred_frames,
            "seconds": round(self.seconds, 3),
            "frames_per_second": round(self.frames_per_second, 2),
            "detections": dict(sorted(self.detections.items())),
            "most_at_once": dict(sorted(self.most_at_once.items())),
            "interrupted": self.interrupted,
            "outputs": self.outputs,
            "warnings": self.warnings,
        } | ({} if self.tracking is None else {"tracking": self.tracking})


def run(
    source: Source,
    detector: Detector,
    sinks: list[Sink],
    batch: int = 8,
    vid_stride: int = 1,
    on_frame: Callable[[FrameResult], None] | None = None,
    tracking: Tracking | None = None,
) -> Summary:
    """Process a whole source into ``sinks`` and summarise it.

    With ``tracking``, detections carry track ids and the summary counts unique vehicles
    (and line crossings); see ``apps.car_detection.tracking``.

    Ctrl-C stops reading, finalises every output with what was processed so far
    and returns a summary marked ``interrupted``; any other error discards the
    text outputs (a video is finalised either way) and propagates.
    """
    summary = Summary(source.name)
    writer = BackgroundWriter(sinks)
    started = time.perf_counter()
    stream = detect_stream(source.frames, detector, batch, vid_stride)
    if tracking is not None:
        stream = tracking.follow(stream)
    try:
        for frame, result, inferred in stream:
            writer.write(frame.rgb, result, inferred)
            summary.frames += 1
            if inferred:
                summary.inferred_frames += 1
                summary.add(result)
            if on_frame is not None:
                on_frame(result)
    except KeyboardInterrupt:
        summary.interrupted = True
    except BaseException as error:
        source.close()
        writer.close(error)
        raise
    source.close()
    writer.close()
    summary.seconds = time.perf_counter() - started
    if tracking is not None:
        summary.tracking = tracking.summary()
    if not summary.interrupted and _cut_short(summary.frames, source.frame_count):
        summary.warnings.append(
            f"{source.name}: decoded {summary.frames} of the {source.frame_count} frames the "
            "file declares; it may be truncated or damaged"
        )
    return summary


def _cut_short(decoded: int, declared: int | None) -> bool:
    """Whether a video ended well before the frame count its container declares.

    Containers' counts can be off by a frame or two for some codecs (``VideoReader``), so
    only a shortfall beyond that, and beyond 1 % of a long video, counts.
    """
    return declared is not None and declared - decoded > max(2, declared // 100)
