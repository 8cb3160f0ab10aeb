"""VideoReader/VideoWriter: round trips, prefetching, finalised outputs and one-line errors."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from shared import video
from shared.errors import InputError
from shared.video import FOURCCS_BY_SUFFIX, VideoReader, VideoWriter, parse_source

WIDTH, HEIGHT, FPS = 64, 48, 10.0


def _frame(index: int) -> np.ndarray:
    """A frame whose colour says its index: red grows, blue falls, green is a fixed stripe."""
    frame = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    frame[:, :, 0] = 20 * index
    frame[:, :, 2] = 255 - 20 * index
    frame[:, 16:32, 1] = 200
    return frame


def _write_video(path, count: int) -> None:
    with VideoWriter(path, FPS, WIDTH, HEIGHT) as writer:
        for index in range(count):
            writer.write(_frame(index))


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_round_trip_keeps_count_size_rate_and_colours(tmp_path, suffix):
    path = tmp_path / f"clip{suffix}"
    _write_video(path, 8)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    with VideoReader(path) as reader:
        assert (reader.width, reader.height, reader.fps, reader.frame_count) == (64, 48, 10.0, 8)
        frames = list(reader)
    assert len(frames) == 8 and reader.frames_read == 8
    for index, frame in enumerate(frames):
        assert frame.shape == (HEIGHT, WIDTH, 3) and frame.dtype == np.uint8
        # Lossy codecs blur edges; the mean colour per region must still say which frame it is.
        expected_colour = _frame(index)[:, 36:].mean((0, 1))
        assert np.abs(frame[:, 36:].mean((0, 1)) - expected_colour).max() < 6
        assert abs(frame[:, 18:30, 1].mean() - 200) < 12


def test_prefetch_yields_the_same_frames(tmp_path):
    path = tmp_path / "clip.avi"
    _write_video(path, 6)
    with VideoReader(path) as plain, VideoReader(path, prefetch=2) as ahead:
        for direct, prefetched in zip(plain, ahead, strict=True):
            np.testing.assert_array_equal(direct, prefetched)


def test_prefetch_thread_stops_when_the_reader_closes_early(tmp_path):
    path = tmp_path / "clip.avi"
    _write_video(path, 10)

    def prefetch_threads() -> int:
        return sum(thread.name == "video-prefetch" for thread in threading.enumerate())

    with VideoReader(path, prefetch=1) as reader:
        first = next(iter(reader))
        assert prefetch_threads() == 1
    assert first.shape == (HEIGHT, WIDTH, 3)
    assert prefetch_threads() == 0


def test_interrupted_writing_still_leaves_a_playable_file(tmp_path):
    path = tmp_path / "partial.mp4"
    with pytest.raises(KeyboardInterrupt), VideoWriter(path, FPS, WIDTH, HEIGHT) as writer:
        for index in range(5):
            writer.write(_frame(index))
        raise KeyboardInterrupt
    with VideoReader(path) as reader:
        assert len(list(reader)) == 5
    assert [p.name for p in tmp_path.iterdir()] == ["partial.mp4"]


def test_writer_without_frames_leaves_no_file(tmp_path):
    with VideoWriter(tmp_path / "nothing.mp4", FPS, WIDTH, HEIGHT):
        pass
    assert list(tmp_path.iterdir()) == []


def test_writer_refuses_wrong_frame_size_and_unknown_suffix(tmp_path):
    with VideoWriter(tmp_path / "a.avi", FPS, WIDTH, HEIGHT) as writer:
        with pytest.raises(ValueError, match="does not match"):
            writer.write(np.zeros((HEIGHT, WIDTH + 2, 3), np.uint8))
        writer.write(_frame(0))
    with pytest.raises(InputError, match="suffix"):
        VideoWriter(tmp_path / "a.gif", FPS, WIDTH, HEIGHT)


def test_container_without_frames_is_an_input_error(tmp_path):
    path = tmp_path / "empty.avi"
    encoder = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (WIDTH, HEIGHT))
    encoder.release()
    assert path.stat().st_size > 0  # a real AVI header, just no frames
    with pytest.raises(InputError, match="no frames") as caught:
        VideoReader(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a folder"),
        (lambda p: p.write_bytes(b""), "empty file"),
        (lambda p: p.write_text("not a video at all\n" * 20), "not a video"),
    ],
    ids=["missing", "folder", "empty", "text"],
)
def test_unusable_files_are_one_line_input_errors(tmp_path, make, fragment):
    path = tmp_path / "movie.mp4"
    make(path)
    with pytest.raises(InputError, match=fragment) as caught:
        VideoReader(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_unopenable_camera_is_an_input_error():
    with pytest.raises(InputError, match="camera 99: cannot be opened"):
        VideoReader(99)


def test_parse_source():
    assert parse_source("0") == 0
    assert parse_source("rtsp://host/stream") == "rtsp://host/stream"
    assert str(parse_source("clips/road.mp4")) == "clips/road.mp4"


def test_real_dashcam_video(data_dir):
    with VideoReader(data_dir / "cars" / "video" / "udacity_test_video.mp4", prefetch=4) as reader:
        assert (reader.width, reader.height, reader.frame_count) == (1280, 720, 38)
        assert reader.fps > 0
        count = sum(1 for frame in reader if frame.shape == (720, 1280, 3))
    assert count == 38


def test_mp4_tries_h264_first_and_falls_back_quietly(tmp_path, monkeypatch, capfd):
    """'avc1' when this OpenCV encodes it; the fallback is recorded, not printed."""
    with VideoWriter(tmp_path / "a.mp4", FPS, WIDTH, HEIGHT) as writer:
        writer.write(_frame(0))
    assert writer.fourcc in FOURCCS_BY_SUFFIX[".mp4"]
    assert capfd.readouterr().err == ""  # a missing H.264 encoder logs errors while failing
    monkeypatch.setitem(FOURCCS_BY_SUFFIX, ".mp4", ("zzzz", "mp4v"))  # a codec nobody has
    with VideoWriter(tmp_path / "b.mp4", FPS, WIDTH, HEIGHT) as writer:
        writer.write(_frame(0))
    assert writer.fourcc == "mp4v"
    with VideoReader(tmp_path / "b.mp4") as reader:
        assert sum(1 for _ in reader) == 1


def test_files_up_to_1080p_are_decoded_by_one_ffmpeg_thread(tmp_path, monkeypatch):
    # The reader decodes in a thread of its own beside the network: FFmpeg's frame threads
    # would only take CPU time from it. Larger frames keep FFmpeg's default.
    path = tmp_path / "clip.mp4"
    _write_video(path, 3)
    with VideoReader(path, prefetch=2) as reader:
        assert reader._capture.get(cv2.CAP_PROP_N_THREADS) == 1
        assert len(list(reader)) == 3
    default = cv2.VideoCapture(str(path))
    monkeypatch.setattr(video, "ONE_DECODING_THREAD_MAX_PIXELS", WIDTH * HEIGHT - 1)
    with VideoReader(path) as reader:
        assert reader._capture.get(cv2.CAP_PROP_N_THREADS) == default.get(cv2.CAP_PROP_N_THREADS)
    default.release()
