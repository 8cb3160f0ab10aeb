"""Frames from any source, and outputs written in a background thread.

``open_source`` turns what a user types (a video file, a camera index, a stream URL, an image
or a folder of images) into one stream of ``Frame`` objects with what is known up front (rate,
size, count); video is decoded ahead in a thread by ``shared.video.VideoReader``.
``BackgroundWriter`` feeds the frames' outputs to sinks in another thread, so that decoding,
the network and encoding overlap. Both were first written for ``detect-cars`` and serve every
app that works frame by frame.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from shared.errors import InputError
from shared.images import IMAGE_SUFFIXES, list_images, read_image
from shared.video import VideoReader, parse_source


class FrameSink(Protocol):
    def write(self, *item: Any) -> None:
        """Take one frame's output (what the caller passed to ``BackgroundWriter.write``)."""

    def close(self, error: BaseException | None = None) -> None:
        """Finalise the output, or discard it when ``error`` is a crash."""


@dataclass
class Frame:
    index: int
    time: float | None
    image: str | None
    rgb: np.ndarray


@dataclass
class Source:
    """An opened source: its frames and what is known of it up front."""

    name: str
    kind: str  # "video", "camera", "stream", "image" or "folder"
    frames: Iterator[Frame]
    frame_count: int | None
    fps: float | None = None
    width: int | None = None
    height: int | None = None
    close: Callable[[], None] = lambda: None


def _image_frames(paths: list[Path], root: Path | None) -> Iterator[Frame]:
    for index, path in enumerate(paths):
        name = str(path.relative_to(root)) if root else path.name
        yield Frame(index, None, name, read_image(path))


def open_source(text: str, prefetch: int = 16) -> Source:
    """Open a video file, camera index, stream URL, image or folder of images."""
    path = Path(text)
    if path.is_dir():
        images = list_images(path)
        if not images:
            raise InputError(
                f"{path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
            )
        return Source(str(path), "folder", _image_frames(images, path), len(images))
    if path.suffix.lower() in IMAGE_SUFFIXES:
        # Read now, not when the first frame is wanted: a missing or corrupt image fails
        # before any model is loaded, as a bad video does.
        rgb = read_image(path)
        height, width = rgb.shape[:2]
        frame = Frame(0, None, path.name, rgb)
        return Source(str(path), "image", iter([frame]), 1, width=width, height=height)
    source = parse_source(text)
    reader = VideoReader(source, prefetch=prefetch)
    kind = "camera" if isinstance(source, int) else "stream" if "://" in str(source) else "video"

    def frames() -> Iterator[Frame]:
        for index, rgb in enumerate(reader):
            yield Frame(index, index / reader.fps, None, rgb)

    return Source(
        reader.name,
        kind,
        frames(),
        reader.frame_count,
        reader.fps,
        reader.width,
        reader.height,
        reader.close,
    )


_DONE = object()


class BackgroundWriter:
    """Feeds sinks from a bounded queue in one thread, in frame order.

    An exception raised by a sink stops the thread and is raised again in the
    caller at its next ``write`` or at ``close``.
    """

    def __init__(self, sinks: Sequence[FrameSink], depth: int = 16) -> None:
        self.sinks = sinks
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="frame-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not _DONE:
            if self._error is not None:
                continue  # drain the queue so the producer never blocks
            try:
                for sink in self.sinks:
                    sink.write(*item)
            except BaseException as error:  # handed to the caller
                self._error = error

    def write(self, *item: Any) -> None:
        """Queue one frame's arguments for every sink's ``write``."""
        if self._error is not None:
            raise self._error
        self._queue.put(item)

    def close(self, error: BaseException | None = None) -> None:
        """Wait for queued frames, then close every sink (discarding files on a crash)."""
        self._queue.put(_DONE)
        self._thread.join()
        failure = error or self._error
        for sink in self.sinks:
            sink.close(failure)
        if error is None and self._error is not None:
            raise self._error
