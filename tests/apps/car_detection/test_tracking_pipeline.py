"""``run(..., tracking=...)``: the synthetic scene through the whole pipeline and its sinks.

A stand-in detector returns the scene's detections for the frame number painted into the
frame's first pixel, so the pipeline (batching, --vid-stride, the writer thread) is real.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from apps.car_detection.pipeline import run
from apps.car_detection.results import TRACKED_CSV_HEADER
from apps.car_detection.sinks import AnnotatedVideoSink, CsvSink, JsonLinesSink
from apps.car_detection.tracker import TrackerSettings
from apps.car_detection.tracking import CountLine, Tracking
from shared.frames import Frame, Source
from shared.images import track_colour
from shared.video import VideoReader
from tests.apps.car_detection import synthetic_scene as scene

SETTINGS = TrackerSettings(high=0.4, low=0.1, birth=0.5, min_hits=3, lost_seconds=1.0)
FPS = 25.0


class SceneDetector:
    def __init__(self, interrupt_at: int | None = None) -> None:
        self.interrupt_at = interrupt_at

    def detect(self, frames):
        found = []
        for rgb in frames:
            index = int(rgb[0, 0, 0])
            if index == self.interrupt_at:
                raise KeyboardInterrupt
            found.append(scene.detections(index))
        return found


class CountingSceneDetector:
    """The scene's detections by the order frames arrive in: a lossy video keeps no pixel
    exactly, so the frame number cannot be painted in as ``SceneDetector`` reads it."""

    def __init__(self) -> None:
        self.seen = 0

    def detect(self, frames):
        found = [scene.detections(self.seen + offset) for offset in range(len(frames))]
        self.seen += len(frames)
        return found


def write_scene_video(path: Path) -> Path:
    """The scene's frames as a video file (for ``CountingSceneDetector``)."""
    from shared.video import VideoWriter

    with VideoWriter(path, FPS, scene.WIDTH, scene.HEIGHT) as writer:
        for frame in scene_source().frames:
            writer.write(frame.rgb)
    return path


def scene_source() -> Source:
    def frames():
        for index in range(scene.FRAMES):
            rgb = np.full((scene.HEIGHT, scene.WIDTH, 3), 40, np.uint8)
            rgb[0, 0] = index
            yield Frame(index, index / FPS, None, rgb)

    return Source("scene", "video", frames(), scene.FRAMES, FPS, scene.WIDTH, scene.HEIGHT)


@pytest.mark.parametrize("stride", [1, 2])
def test_tracked_run_writes_ids_and_counts(tmp_path: Path, stride: int):
    lines, table = tmp_path / "cars.jsonl", tmp_path / "cars.csv"
    tracking = Tracking(SETTINGS, CountLine.parse(scene.LINE), min_frames=10)
    sinks = [JsonLinesSink(str(lines)), CsvSink(str(table), tracked=True)]
    summary = run(scene_source(), SceneDetector(), sinks, batch=4, vid_stride=stride,
                  tracking=tracking)  # fmt: skip
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert [r["frame"] for r in records] == list(range(0, scene.FRAMES, stride))
    tracked = [d for r in records for d in r["detections"]]
    assert tracked and all(isinstance(d["track"], int) for d in tracked)
    assert {d["track"] for d in tracked} == {1, 2, 3, 4, 5}
    rows = list(csv.reader(table.open()))
    assert tuple(rows[0]) == TRACKED_CSV_HEADER and len(rows) == len(tracked) + 1
    assert sorted(int(row[-1]) for row in rows[1:]) == sorted(d["track"] for d in tracked)

    result = summary.to_dict()["tracking"]
    assert result["unique"] == scene.UNIQUE and result["min_track_frames"] == 10
    assert result["line"]["total"] == {"right": 2, "left": 2}
    assert result["line"]["crossings"] == {
        "car": {"right": 1, "left": 2},
        "truck": {"right": 1, "left": 0},
    }


def test_trails_and_the_line_are_drawn_on_every_frame(tmp_path: Path):
    video = tmp_path / "scene.avi"
    tracking = Tracking(SETTINGS, CountLine.parse(scene.LINE))
    sink = AnnotatedVideoSink(video, FPS, scene.WIDTH, scene.HEIGHT)
    run(scene_source(), SceneDetector(), [sink], batch=8, vid_stride=3, tracking=tracking)
    with VideoReader(video) as reader:
        frames = list(reader)
    assert len(frames) == scene.FRAMES  # skipped frames too
    frame = frames[13].astype(int)  # not inferred: carries frame 12's tracks and trails
    # The white line at x = 320, away from the boxes and the caption.
    assert (frame[440:470, 319:322] > 200).all()
    # Track 2 (car B, moving left along y = 300..340) trails behind it, right of its box:
    # its centre went from x = 590 (frame 0) to 470 (frame 12), at y = 320.
    colour = np.array(track_colour(2))
    trail = frame[316:325, 505:575]
    assert (np.abs(trail - colour).sum(axis=-1) < 90).any()


def test_ctrl_c_still_gives_the_tracking_summary(tmp_path: Path):
    tracking = Tracking(SETTINGS, CountLine.parse(scene.LINE), min_frames=10)
    summary = run(scene_source(), SceneDetector(interrupt_at=24), [], batch=4,
                  tracking=tracking)  # fmt: skip
    assert summary.interrupted and summary.frames == 24  # six batches of 4
    # By frame 23: A, B, C and D are tracks; C (truck) and D have crossed, A and B not yet.
    assert summary.tracking["unique"] == {"car": 3, "truck": 1}
    assert summary.tracking["line"]["total"] == {"right": 1, "left": 1}
