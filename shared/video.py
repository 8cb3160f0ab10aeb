"""Video frames in and out with OpenCV: RGB uint8 frames, clear errors, finalised outputs.

``VideoReader`` opens a file, a camera index or a stream URL, checks at once
that a first frame can be decoded (so a text file named ``.mp4``, an empty
container or a dead camera fail before any model is loaded), and yields RGB
frames. With ``prefetch=N`` a background thread decodes up to N frames ahead
while the caller runs inference; OpenCV releases the GIL while decoding, so the
two really overlap.

``VideoWriter`` writes through ``shared.files.atomic_output`` and finalises the
file on close even when the ``with`` block ends in an exception or Ctrl-C, so
the frames written so far become a playable video instead of a truncated one.
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

from shared.errors import InputError
from shared.files import atomic_output

# FFmpeg prints its own complaints ("moov atom not found") straight to stderr; we
# judge every source ourselves and report one line, so keep FFmpeg quiet (-8 is
# AV_LOG_QUIET). Read when OpenCV first opens an FFmpeg capture; a user's own
# setting wins.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

# Cameras and many streams report 0 fps; outputs still need a rate to play at.
DEFAULT_FPS = 30.0

# Codecs tried in order for each suffix. H.264 ('avc1') first, because browsers play it;
# the opencv-python-headless wheels build FFmpeg without an H.264 encoder ('avc1' fails to
# open, checked with 4.14), so MP4 files then fall back to MPEG-4 Part 2 ('mp4v'), which
# desktop players decode but browsers do not (``VideoWriter.fourcc`` says which was used).
FOURCCS_BY_SUFFIX = {
    ".mp4": ("avc1", "mp4v"),
    ".m4v": ("avc1", "mp4v"),
    ".mov": ("avc1", "mp4v"),
    ".mkv": ("XVID",),
    ".avi": ("MJPG",),
}
BROWSER_PLAYABLE_FOURCCS = frozenset({"avc1"})

VideoSource = str | int | os.PathLike[str]


def parse_source(text: str) -> VideoSource:
    """A command-line source: digits are a camera index, ``scheme://`` a stream, else a file."""
    if text.isdigit():
        return int(text)
    if "://" in text:
        return text
    return Path(text)


@contextlib.contextmanager
def _opencv_warnings_silenced(errors_too: bool = False) -> Iterator[None]:
    """Keep OpenCV's own WARN lines (and ERROR lines with ``errors_too``) out of stderr while
    probing a source or an encoder that we then judge ourselves."""
    logging = cv2.utils.logging
    previous = logging.getLogLevel()
    logging.setLogLevel(logging.LOG_LEVEL_SILENT if errors_too else logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        logging.setLogLevel(previous)


def _open_capture(source: VideoSource) -> tuple[cv2.VideoCapture, str, bool]:
    """Open ``source``; return the capture, a name for messages and whether it is a file."""
    if isinstance(source, int) and not isinstance(source, bool):
        with _opencv_warnings_silenced():
            capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise InputError(
                f"camera {source}: cannot be opened (not connected, busy or no access)"
            )
        return capture, f"camera {source}", False
    if isinstance(source, str) and "://" in source:
        with _opencv_warnings_silenced():
            capture = cv2.VideoCapture(source)
        if not capture.isOpened():
            raise InputError(
                f"{source}: cannot open the stream (is the network reachable and the address "
                "right?)"
            )
        return capture, source, False
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a folder, not a video file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file, not a video")
    with _opencv_warnings_silenced():
        capture = _file_capture(path)
    if not capture.isOpened():
        raise InputError(f"{path}: not a video OpenCV can read")
    return capture, str(path), True


# Frames up to this size are decoded by one FFmpeg thread (``_file_capture``).
ONE_DECODING_THREAD_MAX_PIXELS = 1920 * 1080


def _file_capture(path: Path) -> cv2.VideoCapture:
    """A capture of a video file; frames up to 1080p decoded by one FFmpeg thread.

    FFmpeg decodes with a thread per core by default. detect-cars and stylize already decode
    ahead in a thread of their own (``prefetch``), beside the network, and FFmpeg's frame
    threads cost CPU time the network could use: 3.4 against 2.7 ms a frame on the 960x540
    road video, and in detect-cars' loop (2 cores) 23.8 against 25.2 ms a frame, 74.7 against
    71.0 frames/s (medians of 6 alternating rounds each). (face-check reads a video without
    prefetch: one thread adds 0.5 ms to a frame's check of 10 to 25 ms.) The threads pay only
    when one cannot keep up: a 1080p frame has 4x the road video's pixels (about 11 ms, still
    faster than the network), a 4K frame 16x.
    """
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened() or capture.getBackendName() != "FFMPEG":
        return capture
    pixels = capture.get(cv2.CAP_PROP_FRAME_WIDTH) * capture.get(cv2.CAP_PROP_FRAME_HEIGHT)
    if pixels > ONE_DECODING_THREAD_MAX_PIXELS:
        return capture
    single = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, 1])
    if not single.isOpened():
        return capture
    capture.release()
    return single


class _Failure:
    """An exception raised in the decoding thread, carried to the consumer."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


_END = object()


class VideoReader:
    """RGB uint8 frames from a video file, a camera index or a stream URL.

    Attributes: ``fps`` (the source's rate, or ``DEFAULT_FPS`` when it reports
    none, as cameras often do), ``frame_count`` (the container's figure, ``None``
    for cameras, streams and containers that do not say; it can be off by a few
    frames for some codecs, so use it for progress bars, never to stop reading),
    ``width``, ``height`` (of the decoded frames), ``frames_read``.

    Iterating yields frames until the source ends; the reader is single-pass.
    ``prefetch=N`` (N > 0) decodes in a background thread up to N frames ahead.
    """

    def __init__(self, source: VideoSource, prefetch: int = 0) -> None:
        if prefetch < 0:
            raise ValueError(f"prefetch must be >= 0, got {prefetch}")
        self.source = source
        self.prefetch = prefetch
        self._capture, self.name, is_file = _open_capture(source)
        ok, first = self._capture.read()
        if not ok or first is None or first.size == 0:
            self._capture.release()
            raise InputError(f"{self.name}: contains no frames that can be decoded")
        self._first: np.ndarray | None = first
        self.height, self.width = first.shape[:2]
        reported_fps = self._capture.get(cv2.CAP_PROP_FPS)
        self.fps_reported = math.isfinite(reported_fps) and 0 < reported_fps < 1000
        self.fps = float(reported_fps) if self.fps_reported else DEFAULT_FPS
        count = int(self._capture.get(cv2.CAP_PROP_FRAME_COUNT)) if is_file else 0
        self.frame_count: int | None = count if count > 0 else None
        self.frames_read = 0
        self._frames: Iterator[np.ndarray] | None = None
        self._closed = False

    def _decoded_rgb(self) -> Iterator[np.ndarray]:
        """Frames straight from OpenCV, converted BGR → RGB (the first one was read on open)."""
        if self._first is not None:
            first, self._first = self._first, None
            yield cv2.cvtColor(first, cv2.COLOR_BGR2RGB)
        while True:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                return
            yield cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)

    def _prefetched(self) -> Iterator[np.ndarray]:
        """Frames decoded by a background thread into a bounded queue."""
        buffer: queue.Queue[object] = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def put(item: object) -> bool:
            while not stop.is_set():
                try:
                    buffer.put(item, timeout=0.05)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for frame in self._decoded_rgb():
                    if not put(frame):
                        return
            except BaseException as error:  # handed to the consumer, which re-raises it
                put(_Failure(error))
            put(_END)

        thread = threading.Thread(target=produce, name="video-prefetch", daemon=True)
        thread.start()
        try:
            while (item := buffer.get()) is not _END:
                if isinstance(item, _Failure):
                    raise item.error
                yield item  # type: ignore[misc]
        finally:
            stop.set()
            thread.join()

    def __iter__(self) -> Iterator[np.ndarray]:
        if self._closed:
            raise ValueError("reading from a closed VideoReader")
        if self._frames is None:
            self._frames = self._prefetched() if self.prefetch else self._decoded_rgb()
        for frame in self._frames:
            self.frames_read += 1
            yield frame

    def close(self) -> None:
        """Stop the prefetch thread (if any), then release the source."""
        if self._closed:
            return
        self._closed = True
        if self._frames is not None:
            self._frames.close()  # type: ignore[attr-defined]
        self._capture.release()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class VideoWriter:
    """Write RGB uint8 frames to a video file chosen by suffix (see ``FOURCCS_BY_SUFFIX``).

    Frames go to a temporary file beside ``path``; ``close`` (also called by
    ``__exit__``, whatever ended the block) releases the encoder, which writes
    the container index, and renames the file onto ``path``. A writer closed
    before any frame was written leaves no file at all.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, width: int, height: int) -> None:
        self.path = Path(path)
        fourccs = FOURCCS_BY_SUFFIX.get(self.path.suffix.lower())
        if fourccs is None:
            supported = ", ".join(sorted(FOURCCS_BY_SUFFIX))
            raise InputError(f"{self.path}: cannot write video with this suffix (use {supported})")
        if not (math.isfinite(fps) and fps > 0) or width <= 0 or height <= 0:
            raise ValueError(f"invalid video format: {fps} fps, {width}x{height}")
        self.fps, self.width, self.height = float(fps), int(width), int(height)
        self.frames_written = 0
        self._output = atomic_output(self.path)
        temp = self._output.__enter__()
        for fourcc in fourccs:
            # A codec this build lacks logs ERROR lines while failing; the fallback is ours.
            with _opencv_warnings_silenced(errors_too=True):
                self._writer = cv2.VideoWriter(
                    str(temp), cv2.VideoWriter_fourcc(*fourcc), self.fps, (self.width, self.height)
                )
            if self._writer.isOpened():
                break
        if not self._writer.isOpened():
            error = InputError(f"{self.path}: OpenCV cannot encode {'/'.join(fourccs)} video here")
            self._abandon(error)
            raise error
        self.fourcc = fourcc
        self._closed = False

    def _abandon(self, error: BaseException) -> None:
        """Remove the temporary file without touching ``path``."""
        self._writer.release()
        self._output.__exit__(type(error), error, error.__traceback__)

    def write(self, rgb: np.ndarray) -> None:
        """Append one RGB uint8 frame of the size given to the constructor."""
        if self._closed:
            raise ValueError(f"{self.path}: writing to a closed VideoWriter")
        if rgb.dtype != np.uint8 or rgb.shape != (self.height, self.width, 3):
            # OpenCV would silently drop a frame of the wrong size: fail loudly instead.
            raise ValueError(
                f"frame {rgb.shape} {rgb.dtype} does not match the video "
                f"({self.height}, {self.width}, 3) uint8"
            )
        self._writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        self.frames_written += 1

    def close(self) -> None:
        """Finish the file and rename it onto ``path`` (or remove it if no frame was written)."""
        if self._closed:
            return
        self._closed = True
        if self.frames_written == 0:
            self._abandon(InputError(f"{self.path}: no frames written"))
            return
        self._writer.release()
        self._output.__exit__(None, None, None)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Finalise even on an exception or Ctrl-C: what was written is a valid, shorter video.
        self.close()
