"""Where frame results go: an annotated video or images, JSON lines, CSV.

Every file sink writes to a temporary name and renames it when closed, so an
output name never holds a half-written file. ``close(error)`` with an error
(a crash) removes the temporary file; ``close()`` finalises, which the pipeline
also does after Ctrl-C so that what was processed so far is kept. After closing,
``written`` says whether the output's name now holds this run's result (a video or
images are written only once a frame arrives; an earlier file of that name is then
left as it was).

``shared.frames.BackgroundWriter`` runs the sinks in a thread: drawing and
encoding overlap with inference (OpenCV releases the GIL while it encodes).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import IO, Protocol

import numpy as np

from apps.car_detection.results import CSV_HEADER, TRACKED_CSV_HEADER, FrameResult
from shared.files import atomic_output
from shared.images import ImageOutput
from shared.video import VideoWriter


class Sink(Protocol):
    def write(self, rgb: np.ndarray, result: FrameResult, inferred: bool) -> None:
        """Take one frame; ``inferred`` is False for frames skipped by ``--vid-stride``,
        which carry the most recent result so a video keeps its boxes between inferences."""

    def close(self, error: BaseException | None = None) -> None:
        """Finalise the output, or discard it when ``error`` is a crash."""

    @property
    def written(self) -> bool:
        """Whether this run's result is at the output's name (once closed)."""


class AtomicTextFile:
    """A text file written under a temporary name and renamed on a clean close."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.written = False  # renamed onto ``path``
        self._output = atomic_output(path)
        self.stream: IO[str] = open(self._output.__enter__(), "w", newline="")  # noqa: SIM115

    def close(self, error: BaseException | None = None) -> None:
        self.stream.close()
        if error is None:
            self._output.__exit__(None, None, None)
            self.written = True
        else:
            self._output.__exit__(type(error), error, error.__traceback__)


class JsonLinesSink:
    """One JSON object per inferred frame; ``-`` writes to stdout as frames arrive."""

    def __init__(self, path: str) -> None:
        self._file = None if path == "-" else AtomicTextFile(Path(path))
        self._stream = sys.stdout if self._file is None else self._file.stream

    def write(self, rgb: np.ndarray, result: FrameResult, inferred: bool) -> None:
        if inferred:
            self._stream.write(result.to_json() + "\n")
            if self._file is None:
                self._stream.flush()

    def close(self, error: BaseException | None = None) -> None:
        if self._file is not None:
            self._file.close(error)

    @property
    def written(self) -> bool:
        return self._file is None or self._file.written


class CsvSink:
    """One row per detection of every inferred frame, with a header row; ``tracked`` adds
    the track id column."""

    def __init__(self, path: str, tracked: bool = False) -> None:
        self._file = AtomicTextFile(Path(path))
        self._writer = csv.writer(self._file.stream)
        self._writer.writerow(TRACKED_CSV_HEADER if tracked else CSV_HEADER)
        self._tracked = tracked

    def write(self, rgb: np.ndarray, result: FrameResult, inferred: bool) -> None:
        if inferred:
            self._writer.writerows(result.csv_rows(self._tracked))

    def close(self, error: BaseException | None = None) -> None:
        self._file.close(error)

    @property
    def written(self) -> bool:
        return self._file.written


class AnnotatedVideoSink:
    """Every frame of the input, boxes drawn, at the input's size and rate."""

    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        self._writer = VideoWriter(path, fps, width, height)
        self.fourcc = self._writer.fourcc  # the codec this OpenCV build could encode

    def write(self, rgb: np.ndarray, result: FrameResult, inferred: bool) -> None:
        self._writer.write(result.draw(rgb))

    def close(self, error: BaseException | None = None) -> None:
        # A video is finalised even after a crash: the frames written so far play.
        self._writer.close()

    @property
    def written(self) -> bool:
        return self._writer.frames_written > 0  # none: no file (``VideoWriter.close``)


class AnnotatedImageSink:
    """Annotated copies of images: one file, or a folder keeping the input names
    (``shared.images.ImageOutput``)."""

    def __init__(self, path: Path, folder: bool) -> None:
        self._output = ImageOutput(path, folder)

    def write(self, rgb: np.ndarray, result: FrameResult, inferred: bool) -> None:
        self._output.write(result.draw(rgb), result.image, result.frame)

    def close(self, error: BaseException | None = None) -> None:
        """Each image was complete when written; nothing to finalise."""

    @property
    def written(self) -> bool:
        return self._output.images_written > 0
