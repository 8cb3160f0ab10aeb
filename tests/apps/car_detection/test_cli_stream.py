"""``detect-cars URL --track --count-line`` on a stream, and a camera index on the same path.

A stream is served over HTTP by the test itself (loopback only, a thread ended with the test);
OpenCV's FFmpeg reads it as it reads any network stream. There is no camera on a test machine,
so ``cv2.VideoCapture`` is handed the scene's video for index 0: what is checked is that a
camera index goes through the same reader, tracker and counting line as a file or stream.
"""

from __future__ import annotations

import functools
import http.server
import json
import threading
from pathlib import Path

import cv2
import pytest
from click.testing import CliRunner

from apps.car_detection import detector
from apps.car_detection.cli import main
from tests.apps.car_detection import synthetic_scene as scene
from tests.apps.car_detection.test_tracking_pipeline import (
    CountingSceneDetector,
    write_scene_video,
)

# What the scene must give with the command's own tracker settings: 3 cars and a truck of at
# least 10 frames, two crossings of the vertical line each way (test_tracking_pipeline).
LINE_TOTAL = {"right": 2, "left": 2}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """No request log on the test's stderr."""


@pytest.fixture
def served_scene(tmp_path: Path):
    """The scene's video at ``http://127.0.0.1:PORT/scene.avi`` for the test's duration."""
    write_scene_video(tmp_path / "scene.avi")
    handler = functools.partial(_QuietHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/scene.avi"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def stand_in(monkeypatch) -> None:
    monkeypatch.setattr(detector, "load_detector", lambda **_: CountingSceneDetector())


def track(source: str, *options: str) -> dict:
    result = CliRunner().invoke(main, [source, "--count-line", scene.LINE, "--json", *options])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_track_and_count_line_on_an_http_stream(served_scene: str, stand_in, tmp_path: Path):
    lines = tmp_path / "tracks.jsonl"
    summary = track(served_scene, "--no-draw", "--detections", str(lines))
    assert summary["source"] == served_scene and summary["frames"] == scene.FRAMES
    assert summary["tracking"]["unique"] == scene.UNIQUE
    assert summary["tracking"]["line"]["total"] == LINE_TOTAL
    records = [json.loads(line) for line in lines.read_text().splitlines()]
    assert {d["track"] for r in records for d in r["detections"]} == {1, 2, 3, 4, 5}


def test_a_stream_named_by_its_url_gets_a_local_annotated_video(
    served_scene: str, stand_in, tmp_path: Path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, [served_scene, "--track", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["outputs"] == {"annotated": "scene_cars.mp4"}
    assert cv2.VideoCapture("scene_cars.mp4").get(cv2.CAP_PROP_FRAME_COUNT) == scene.FRAMES


def test_a_camera_index_takes_the_same_path(stand_in, tmp_path: Path, monkeypatch):
    video = write_scene_video(tmp_path / "scene.avi")
    opened = []
    real_capture = cv2.VideoCapture

    def camera(source, *args):
        opened.append(source)
        return real_capture(str(video)) if source == 0 else real_capture(source, *args)

    monkeypatch.setattr(cv2, "VideoCapture", camera)
    monkeypatch.chdir(tmp_path)
    summary = track("0")
    assert opened == [0]  # an index, not a file named "0"
    assert summary["source"] == "camera 0" and summary["frames"] == scene.FRAMES
    assert summary["tracking"]["unique"] == scene.UNIQUE
    assert summary["tracking"]["line"]["total"] == LINE_TOTAL
    # A camera has no name to give an output: nothing is written unless asked.
    assert summary["outputs"] == {} and list(tmp_path.iterdir()) == [video]
