"""``stylize``: from image files to a stylised image file, callable from Python as from the command.

Everything that can be wrong with the input (files, sizes, the output path, the options) is
checked before the network is built, so a mistake costs a second, not a run.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from apps.style_transfer import features as feature_networks
from apps.style_transfer.optimize import (
    MIN_SIDE,
    IterationReport,
    check_settings,
    scale_sizes,
    stylize_image,
)
from apps.style_transfer.settings import (
    DEFAULT_MODEL,
    DEFAULT_PRECISION,
    MAX_SIDE,
    TransferSettings,
)
from shared.cli import EXIT_INTERRUPTED
from shared.errors import InputError, UserError
from shared.files import refuse_to_replace
from shared.images import read_image, write_image


class Interrupted(UserError):
    """Ctrl-C during the optimisation; the best image so far was saved (the message says where)."""

    exit_code = EXIT_INTERRUPTED


@dataclass
class StylizeResult:
    """What a run produced, as plain data (the command prints it, or its JSON)."""

    output: str
    content: str
    styles: list[str]
    model: str
    precision: str
    content_layer: str
    style_layers: list[str]
    size: list[int]  # [width, height] of the result, as the text says 128x96
    scales: int
    iterations: int  # per scale
    optimizer: str
    seconds: float
    first: dict[str, float]  # loss parts of the starting image at the finest scale
    last: dict[str, float]  # and after its last iteration
    snapshots: list[str] = field(default_factory=list)
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def default_output(content: Path) -> Path:
    """``<content>_stylized.<ext>`` beside the content image."""
    return content.with_name(f"{content.stem}_stylized{content.suffix}")


def check_output(output: Path, inputs: Sequence[Path]) -> Path:
    """The output path, or one clear error when it would overwrite an input or cannot be made."""
    resolved = output.resolve()
    for path in inputs:
        if path.exists() and resolved == path.resolve():
            raise InputError(f"{output}: is an input image; choose another --output")
    if not output.parent.is_dir():
        raise InputError(f"{output}: folder {output.parent} does not exist")
    if output.is_dir():
        raise InputError(f"{output}: is a folder; --output needs a file name")
    if not cv2.haveImageWriter(str(output)):
        raise InputError(f"{output}: cannot write an image with suffix '{output.suffix}'")
    return output


def snapshot_path(output: Path, step: int) -> Path:
    """``<output stem>_<step>.<ext>``: the image after ``step`` iterations (``save_every``)."""
    return output.with_name(f"{output.stem}_{step:05d}{output.suffix}")


def read_checked(path: Path, role: str) -> np.ndarray:
    """Read an image (any real photo becomes RGB uint8) and refuse one too small to stylise."""
    image = read_image(path)
    height, width = image.shape[:2]
    if min(height, width) < MIN_SIDE:
        raise InputError(
            f"{path}: {width}x{height} px is too small for a {role} image "
            f"(at least {MIN_SIDE} px on each side)"
        )
    return image


def working_size(content: np.ndarray, size: int, path: Path, notice: Callable[[str], None]) -> int:
    """The longest side to work at: ``size`` (0 = the content's own), at most ``MAX_SIDE``."""
    if size < 0:
        raise InputError(f"--size must be positive (or 0 for the content's own size), not {size}")
    requested = size or max(content.shape[:2])
    if requested > MAX_SIDE:
        height, width = content.shape[:2]
        notice(
            f"{path}: working at {MAX_SIDE} px on the longest side instead of {requested} "
            f"(content is {width}x{height}); larger takes too long on a CPU"
        )
        return MAX_SIDE
    return requested


class _TensorBoardLog:
    """Loss parts every iteration and the image as it forms, for ``tensorboard --logdir``."""

    def __init__(self, logdir: Path, image_every: int) -> None:
        import tensorflow as tf

        self._tf = tf
        self._writer = tf.summary.create_file_writer(str(logdir))
        self._image_every = image_every

    def __call__(self, report: IterationReport, step: int) -> None:
        from shared.tensorboard import scalars

        parts = report.parts.as_dict()
        scalars(self._writer, step, {f"loss/{name}": value for name, value in parts.items()})
        if report.iteration % self._image_every == 0:
            with self._writer.as_default():
                self._tf.summary.image("image", report.render()[np.newaxis], step=step)

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()


def stylize(
    content: str | Path,
    styles: Sequence[str | Path],
    output: str | Path | None = None,
    settings: TransferSettings | None = None,
    *,
    model: str = DEFAULT_MODEL,
    precision: str = DEFAULT_PRECISION,
    content_layer: str | None = None,
    style_layers: Sequence[str] | None = None,
    save_every: int = 0,
    logdir: str | Path | None = None,
    notice: Callable[[str], None] | None = None,
    on_iteration: Callable[[IterationReport], None] | None = None,
    exist_ok: bool = False,
) -> StylizeResult:
    """Paint the image ``content`` in the manner of ``styles`` and write it to ``output``.

    ``save_every`` > 0 also writes ``<output stem>_<iteration>.<ext>`` every so many
    iterations (counted over all scales); ``precision`` is the feature network's arithmetic
    (``features.PRECISIONS``; bfloat16 only when asked for); ``logdir`` records TensorBoard
    summaries.
    ``notice`` receives one-line messages (a network fallback, a size reduced); by default
    they go to stderr, keeping stdout for results. Ctrl-C during the optimisation writes the
    best image so far to ``output`` and raises ``Interrupted``, whose message says where.
    An existing ``output`` or snapshot is an error unless ``exist_ok``: an earlier result is
    never replaced by accident.
    """
    notice = notice or _to_stderr
    settings = settings or TransferSettings()
    content = Path(content)
    styles = [Path(style) for style in styles]
    if not styles:
        raise InputError("at least one style image is needed")
    check_settings(settings, len(styles))
    output = check_output(Path(output) if output else default_output(content), [content, *styles])
    if save_every < 0:
        raise InputError(f"--save-every must not be negative, not {save_every}")
    planned = [output]
    if save_every:
        last_step = settings.scales * settings.iterations
        planned += [snapshot_path(output, n) for n in range(save_every, last_step + 1, save_every)]
    for path in planned:
        refuse_to_replace(path, exist_ok)

    content_image = read_checked(content, "content")
    style_images = [read_checked(style, "style") for style in styles]
    size = working_size(content_image, settings.size, content, notice)
    settings = replace(settings, size=size)
    scale_sizes(*content_image.shape[:2], size, settings.scales)  # too small a scale fails now

    network, weights = feature_networks.choose_network(model, notice)
    features, content_layer, style_layers = feature_networks.build_features(
        network, weights, content_layer, style_layers, precision
    )

    history: list[dict[str, float]] = []
    snapshots: list[str] = []
    image_every = save_every or max(1, settings.iterations // 10)
    board = _TensorBoardLog(Path(logdir), image_every) if logdir else None
    # Kept for Ctrl-C: the lowest loss at the finest scale reached (losses of different
    # scales are not comparable, and a finer image is further along).
    best: IterationReport | None = None

    def record(report: IterationReport) -> None:
        nonlocal best
        if best is None or report.scale > best.scale or report.parts.total < best.parts.total:
            best = report
        history.append(
            {"scale": report.scale, "iteration": report.iteration, **report.parts.as_dict()}
        )
        step = report.scale * settings.iterations + report.iteration  # counted over all scales
        if board is not None:
            board(report, step)
        if save_every and report.iteration > 0 and step % save_every == 0:
            snapshot = snapshot_path(output, step)
            write_image(snapshot, report.render())
            snapshots.append(str(snapshot))
        if on_iteration is not None:
            on_iteration(report)

    started = time.perf_counter()
    try:
        result = stylize_image(features, content_image, style_images, settings, record)
    except KeyboardInterrupt:
        if best is None:
            raise  # nothing computed yet: nothing to keep
        _save_interrupted(output, best, history, settings)
    finally:
        if board is not None:
            board.close()
    seconds = time.perf_counter() - started
    write_image(output, result)

    finest = [entry for entry in history if entry["scale"] == settings.scales - 1]
    return StylizeResult(
        output=str(output),
        content=str(content),
        styles=[str(style) for style in styles],
        model=network.name,
        precision=precision,
        content_layer=content_layer,
        style_layers=list(style_layers),
        size=[result.shape[1], result.shape[0]],
        scales=settings.scales,
        iterations=settings.iterations,
        optimizer=settings.optimizer,
        seconds=round(seconds, 3),
        first=_parts(finest[0]),
        last=_parts(finest[-1]),
        snapshots=snapshots,
        history=history,
    )


def _save_interrupted(
    output: Path, best: IterationReport, history: list[dict[str, float]], settings: TransferSettings
) -> None:
    """Write the best image so far to ``output`` and raise ``Interrupted`` saying so."""
    image = best.render()
    write_image(output, image)
    last = history[-1]
    done = last["scale"] * settings.iterations + last["iteration"]
    height, width = image.shape[:2]
    raise Interrupted(
        f"interrupted at iteration {done} of {settings.scales * settings.iterations}: "
        f"the best image so far ({width}x{height}, loss {best.parts.total:.4g}) is in {output}"
    )


def _to_stderr(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr)


def _parts(entry: dict[str, float]) -> dict[str, float]:
    return {name: entry[name] for name in ("total", "content", "style", "tv")}
