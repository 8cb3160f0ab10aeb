"""``stylize SOURCE --model style.keras``: paint photos, folders and videos in one pass each.

The model is a ``fast.StyleNetwork`` trained by ``stylize-train``, run by ``shared.runtime``
as detect-cars' network is: compiled once by OpenVINO and cached (any frame size), or by
TensorFlow. Sources are read with ``shared.frames.open_source`` (an image, a folder of images,
a video file, a camera or a stream), frames decoded ahead in one thread, and results written
in another (``shared.frames.BackgroundWriter``): decoding, the network and encoding overlap.
A video's frames go to the network ``VIDEO_BATCH`` at a time, one per OpenVINO stream (one
core each); a photo goes alone, spread over all cores. A video keeps the input's size, rate
and frame count; Ctrl-C finalises it with the frames done so far.

Temporal smoothing (``smoothing`` in [0, 1)) blends each painted frame with the previous
result where the input did not change, so the texture does not flicker on still parts of the
scene; where the input moved, the new painting is taken as is (no ghosting). Every video run
reports the mean frame-to-frame change of its output, the figure smoothing lowers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from shared.errors import InputError
from shared.files import refuse_to_replace, require_parent_folder
from shared.frames import BackgroundWriter, Frame, Source, open_source
from shared.images import IMAGE_SUFFIXES, ImageOutput
from shared.runtime import InferenceModel, load_model
from shared.video import VideoWriter

# Input change (mean over RGB, in [0, 1]) at which a pixel takes the new painting entirely.
MOTION_SCALE = 0.08
# Video frames painted at once: OpenVINO's throughput mode runs them one per stream.
VIDEO_BATCH = 4
# Part of the compiled-model cache key (``shared.runtime``): names the graph ``fast.painter``
# builds, so a change to it (or to the network) must change this.
PAINTER_GRAPH = "painter-2"  # 2: up-sampling as resize operations


def load_painter(
    path: str | Path,
    runtime: str | None = None,
    hint: str = "latency",
    notify: Callable[[str], None] | None = None,
) -> InferenceModel:
    """A trained style ready to paint: ``painter(frames)[0]`` maps (B, H, W, 3) uint8 frames to
    their paintings, on ``runtime`` (``shared.runtime``; None: OpenVINO where it works).

    ``metadata`` holds ``style_name`` and ``width``. The compiled model is cached by the file's
    digest, so a retrained style is compiled anew; a cached one loads without TensorFlow.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")

    def build():
        from apps.style_transfer.fast import load_style, painter

        network = load_style(path)
        return painter(network), {"style_name": network.style_name, "width": network.width}

    extra = {} if notify is None else {"notify": notify}
    return load_model(f"style-{path.stem}", [path], PAINTER_GRAPH, build, runtime, hint, **extra)


@dataclass
class RenderResult:
    """What a run produced, as plain data (the command prints it, or its JSON)."""

    output: str
    source: str
    kind: str  # "image", "folder", "video", "camera" or "stream"
    model: str
    style: str
    runtime: str  # "openvino" or "tensorflow"
    frames: int
    size: list[int]  # [height, width] of the (last) frame
    seconds: float
    smoothing: float
    mean_change: float | None  # mean |frame t - frame t-1| of the output, pixel levels (video)
    input_change: float | None  # the same for the input
    interrupted: bool = False

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict:
        return {**asdict(self), "frames_per_second": round(self.frames_per_second, 2)}


class TemporalSmoother:
    """Blend each painted frame with the previous output where the input stood still.

    keep = smoothing x (1 - |input change| / MOTION_SCALE), clipped to [0, smoothing], per
    pixel (the change blurred a little so noise does not count as motion);
    output = keep x previous output + (1 - keep) x new painting.
    """

    def __init__(self, smoothing: float) -> None:
        if not 0.0 <= smoothing < 1.0:
            raise InputError(f"--smooth must be in [0, 1), not {smoothing}")
        self.smoothing = smoothing
        self._previous_input: np.ndarray | None = None
        self._previous_output: np.ndarray | None = None

    def __call__(self, frame: np.ndarray, painted: np.ndarray) -> np.ndarray:
        if self.smoothing == 0.0:
            return painted
        current = frame.astype(np.float32)
        result = painted.astype(np.float32)
        if self._previous_input is not None and self._previous_input.shape == current.shape:
            change = np.abs(current - self._previous_input).mean(axis=2) / 255.0
            change = cv2.blur(change, (5, 5))
            keep = self.smoothing * np.clip(1.0 - change / MOTION_SCALE, 0.0, 1.0)
            result = (
                keep[..., np.newaxis] * self._previous_output
                + (1.0 - keep[..., np.newaxis]) * result
            )
        self._previous_input, self._previous_output = current, result
        return np.clip(np.rint(result), 0, 255).astype(np.uint8)


class _ChangeMeter:
    """Mean absolute change between consecutive frames, in pixel levels."""

    def __init__(self) -> None:
        self._previous: np.ndarray | None = None
        self._total = 0.0
        self._count = 0

    def add(self, frame: np.ndarray) -> None:
        if self._previous is not None and self._previous.shape == frame.shape:
            self._total += float(cv2.absdiff(frame, self._previous).mean())
            self._count += 1
        self._previous = frame

    @property
    def mean(self) -> float | None:
        return round(self._total / self._count, 3) if self._count else None


class _VideoSink:
    def __init__(self, path: Path, fps: float, width: int, height: int) -> None:
        self._writer = VideoWriter(path, fps, width, height)

    def write(self, frame: Frame, painted: np.ndarray) -> None:
        self._writer.write(painted)

    def close(self, error: BaseException | None = None) -> None:
        self._writer.close()  # finalised even after a crash or Ctrl-C: what was written plays


class _ImageSink:
    """Painted images: one file, or a folder keeping the input names (``ImageOutput``)."""

    def __init__(self, path: Path, folder: bool) -> None:
        self._output = ImageOutput(path, folder)

    def write(self, frame: Frame, painted: np.ndarray) -> None:
        self._output.write(painted, frame.image, frame.index)

    def close(self, error: BaseException | None = None) -> None:
        """Each image was complete when written; nothing to finalise."""


def default_output(source: Source, text: str, style: str) -> Path:
    """``<name>_<style>`` beside the input: same suffix for an image, ``.mp4`` for video."""
    tag = style or "stylized"
    if source.kind == "folder":
        folder = Path(text.rstrip("/\\"))
        return folder.with_name(f"{folder.name}_{tag}")
    if source.kind == "image":
        path = Path(text)
        return path.with_name(f"{path.stem}_{tag}{path.suffix}")
    if source.kind == "video":
        path = Path(text)
        return path.with_name(f"{path.stem}_{tag}.mp4")
    raise InputError(f"{text}: give --output for a {source.kind}")


def _check_output(output: Path, source: Source, text: str, exist_ok: bool) -> None:
    """Refuse an output that is (or holds) the input even with ``exist_ok``, an existing one
    without it, and one that cannot be written."""
    inputs = Path(text).resolve()
    if source.kind == "folder":
        if output.exists() and not output.is_dir():
            raise InputError(f"{output}: exists and is not a folder (a folder input needs one)")
        if output.resolve() == inputs or inputs in output.resolve().parents:
            raise InputError(f"{output}: is inside the input folder; choose another --output")
        require_parent_folder(output)
        refuse_to_replace(output, exist_ok)
        return
    if output.exists() and output.resolve() == inputs:
        raise InputError(f"{output}: is the input; choose another --output")
    refuse_to_replace(output, exist_ok)
    if output.is_dir():
        raise InputError(f"{output}: is a folder; --output needs a file name")
    require_parent_folder(output)
    writable = output.suffix.lower() in IMAGE_SUFFIXES and cv2.haveImageWriter(str(output))
    if source.kind == "image" and not writable:
        raise InputError(f"{output}: cannot write an image with suffix '{output.suffix}'")


def stylize_with_model(
    source: str,
    model: str | Path,
    output: str | Path | None = None,
    *,
    smoothing: float = 0.0,
    on_frame: Callable[[int, int | None], None] | None = None,
    exist_ok: bool = False,
    runtime: str | None = None,
    notify: Callable[[str], None] | None = None,
) -> RenderResult:
    """Paint ``source`` (image, folder, video, camera, stream) with the trained ``model``.

    An existing ``output`` is replaced only with ``exist_ok`` (a folder output is then
    written into); the input is never overwritten. ``runtime`` is ``openvino`` or
    ``tensorflow`` (None: OpenVINO where it works); ``notify`` gets its one-line notes.

    ``on_frame(done, total)`` is called after every frame (``total`` None when unknown).
    Ctrl-C stops reading, finalises the output with what was painted and returns a result
    marked ``interrupted``.
    """
    smoother = TemporalSmoother(smoothing)  # checks the value before anything is opened
    opened = open_source(source, prefetch=2 * VIDEO_BATCH)
    video = opened.kind not in ("image", "folder")
    try:
        # A given output is checked before the model loads; the default one is named after
        # the style, which the model knows.
        if output is not None:
            output = Path(output)
            _check_output(output, opened, source, exist_ok)
        hint = "throughput" if video else "latency"
        paint = load_painter(model, runtime, hint, notify)
        style = paint.metadata["style_name"]
        if output is None:
            output = default_output(opened, source, style)
            _check_output(output, opened, source, exist_ok)
        if video:
            sink = _VideoSink(output, opened.fps, opened.width, opened.height)
        else:
            sink = _ImageSink(output, folder=opened.kind == "folder")
    except BaseException:
        opened.close()
        raise
    writer = BackgroundWriter([sink], depth=2 * VIDEO_BATCH)
    in_change, out_change = _ChangeMeter(), _ChangeMeter()
    frames, size, interrupted = 0, [0, 0], False
    # Photos differ in size and each is spread over all cores; video frames share one size.
    batch: list[Frame] = []
    batch_size = VIDEO_BATCH if video else 1

    def paint_batch() -> None:
        nonlocal frames, size
        paintings = paint(np.stack([frame.rgb for frame in batch]))[0]
        for frame, painting in zip(batch, paintings, strict=True):
            painted = smoother(frame.rgb, painting)
            writer.write(frame, painted)
            if video:
                in_change.add(frame.rgb)
                out_change.add(painted)
            frames += 1
            size = list(painted.shape[:2])
            if on_frame is not None:
                on_frame(frames, opened.frame_count)
        batch.clear()

    started = time.perf_counter()
    try:
        for frame in opened.frames:
            batch.append(frame)
            if len(batch) == batch_size:
                paint_batch()
        if batch:
            paint_batch()
    except KeyboardInterrupt:
        interrupted = True  # the frames read but not yet painted are left out
    except BaseException as error:
        opened.close()
        writer.close(error)
        raise
    opened.close()
    writer.close()
    seconds = time.perf_counter() - started
    return RenderResult(
        output=str(output),
        source=source,
        kind=opened.kind,
        model=str(model),
        style=style,
        runtime=paint.runtime,
        frames=frames,
        size=size,
        seconds=round(seconds, 3),
        smoothing=smoothing,
        mean_change=out_change.mean if video else None,
        input_change=in_change.mean if video else None,
        interrupted=interrupted,
    )
