"""The detect-cars pipeline's plumbing, with a stand-in detector so it runs in a blink.

The stand-in finds one "car" where a bright square was painted, so the tests can
tell which frame a result belongs to. The real detector is tested in
test_detector.py and end to end in test_cli.py.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from apps.car_detection.pipeline import detect_stream, run
from apps.car_detection.results import CSV_HEADER, Detection
from apps.car_detection.sinks import AnnotatedVideoSink, CsvSink, JsonLinesSink
from shared.frames import open_source
from shared.images import write_image
from shared.video import VideoReader, VideoWriter

WIDTH, HEIGHT = 96, 64


def frame_with_square(index: int) -> np.ndarray:
    """A dark frame with a white 16x16 square whose x position encodes the index."""
    rgb = np.full((HEIGHT, WIDTH, 3), 20, np.uint8)
    x = 4 * (index % 16)
    rgb[20:36, x : x + 16] = 255
    return rgb


class SquareDetector:
    """Finds the white square; can raise an error on a chosen call."""

    def __init__(self, fail_on_call: int | None = None, error: type[BaseException] = RuntimeError):
        self.calls = 0
        self.batch_sizes: list[int] = []
        self.fail_on_call = fail_on_call
        self.error = error

    def detect(self, frames):
        self.calls += 1
        if self.calls == self.fail_on_call:
            raise self.error()
        self.batch_sizes.append(len(frames))
        found = []
        for rgb in frames:
            ys, xs = np.nonzero(rgb[..., 0] > 140)  # survives lossy compression
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            found.append([Detection("car", 2, 0.9, box)])
        return found


@pytest.fixture
def video(tmp_path: Path) -> Path:
    path = tmp_path / "clip.avi"
    with VideoWriter(path, 10.0, WIDTH, HEIGHT) as writer:
        for index in range(23):
            writer.write(frame_with_square(index))
    return path


def test_every_frame_is_processed_in_order_and_batched(video: Path):
    detector = SquareDetector()
    source = open_source(str(video))
    seen = [
        (frame.index, result.frame, inferred)
        for frame, result, inferred in detect_stream(source.frames, detector, batch=4)
    ]
    source.close()
    assert [s[0] for s in seen] == list(range(23))
    assert all(index == frame for index, frame, _ in seen)
    assert detector.batch_sizes == [4, 4, 4, 4, 4, 3]


def test_vid_stride_infers_every_nth_frame_and_carries_boxes_between(video: Path):
    detector = SquareDetector()
    source = open_source(str(video))
    results = list(detect_stream(source.frames, detector, batch=2, vid_stride=5))
    source.close()
    inferred = [frame.index for frame, _, was_inferred in results if was_inferred]
    assert inferred == [0, 5, 10, 15, 20]
    # Frame 7 shows the boxes found on frame 5, the most recent inferred one.
    frame7 = results[7][1]
    assert frame7.frame == 7 and frame7.detections[0].box[0] == 4 * 5


def test_run_writes_video_json_lines_and_csv(video: Path, tmp_path: Path):
    source = open_source(str(video))
    outputs = tmp_path / "annotated.mp4", tmp_path / "det.jsonl", tmp_path / "det.csv"
    sinks = [
        AnnotatedVideoSink(outputs[0], source.fps, source.width, source.height),
        JsonLinesSink(str(outputs[1])),
        CsvSink(str(outputs[2])),
    ]
    summary = run(source, SquareDetector(), sinks, batch=3)
    assert summary.frames == summary.inferred_frames == 23
    assert summary.detections == {"car": 23}
    assert summary.most_at_once == {"car": {"count": 1, "frame": 0}}

    with VideoReader(outputs[0]) as reader:
        assert (reader.width, reader.height, reader.fps) == (WIDTH, HEIGHT, 10.0)
        assert sum(1 for _ in reader) == 23

    lines = [json.loads(line) for line in outputs[1].read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(23))
    assert lines[3] == {
        "frame": 3,
        "time": 0.3,
        "image": None,
        "detections": [
            {"label": "car", "class_id": 2, "score": 0.9, "box": [12.0, 20.0, 28.0, 36.0]}
        ],
    }
    rows = list(csv.reader(outputs[2].open()))
    assert tuple(rows[0]) == CSV_HEADER and len(rows) == 24
    assert rows[4][:6] == ["3", "0.3", "", "car", "2", "0.9"]


def test_ctrl_c_finalises_outputs_with_what_was_processed(video: Path, tmp_path: Path):
    source = open_source(str(video))
    annotated, lines = tmp_path / "out.avi", tmp_path / "det.jsonl"
    sinks = [
        AnnotatedVideoSink(annotated, source.fps, source.width, source.height),
        JsonLinesSink(str(lines)),
    ]
    summary = run(source, SquareDetector(fail_on_call=3, error=KeyboardInterrupt), sinks, batch=4)
    assert summary.interrupted and summary.frames == 8
    with VideoReader(annotated) as reader:
        assert sum(1 for _ in reader) == 8
    assert len(lines.read_text().splitlines()) == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "det.jsonl", "out.avi"]


def test_a_crash_leaves_no_partial_text_output(video: Path, tmp_path: Path):
    source = open_source(str(video))
    lines = tmp_path / "det.jsonl"
    with pytest.raises(RuntimeError):
        run(source, SquareDetector(fail_on_call=2), [JsonLinesSink(str(lines))], batch=4)
    assert not lines.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi"]


def test_a_folder_of_images_keeps_names_and_sizes(tmp_path: Path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in (2, 0, 1):
        write_image(folder / f"img{index}.png", frame_with_square(index))
    source = open_source(str(folder))
    assert source.kind == "folder" and source.frame_count == 3
    results = [result for _, result, _ in detect_stream(source.frames, SquareDetector(), batch=2)]
    assert [r.image for r in results] == ["img0.png", "img1.png", "img2.png"]
    assert [r.time for r in results] == [None, None, None]
    assert [r.detections[0].box[0] for r in results] == [0.0, 4.0, 8.0]
