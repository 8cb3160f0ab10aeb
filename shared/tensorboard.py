"""TensorBoard logging shared by every training and evaluation run.

The three apps monitor the same kinds of things: losses and metrics per step
(``scalars``), detections drawn on images (``image_with_boxes``), precision-recall
trade-offs (``pr_curve``, in the PR-curves plugin's own format, so TensorBoard
draws it with its threshold slider) and embeddings (``embedding_projector``,
for the face embeddings). ``tensorboard_callback`` gives Keras ``fit`` the same
log folder layout with settings cheap enough for a laptop CPU.

Writers are ordinary ``tf.summary.create_file_writer(logdir)`` objects; each
helper writes within ``writer.as_default()`` so callers need no summary context.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from shared.files import atomic_output
from shared.images import draw_boxes, write_image

# The projector reads the embedding from a checkpoint under this variable name.
EMBEDDING_VARIABLE = "embedding"
EMBEDDING_TENSOR_NAME = f"{EMBEDDING_VARIABLE}/.ATTRIBUTES/VARIABLE_VALUE"
METADATA_FILENAME = "metadata.tsv"
SPRITE_FILENAME = "sprite.png"
_MAX_SPRITE_SIDE = 8192  # TensorBoard's limit for the sprite image


def scalars(writer: Any, step: int, values: Mapping[str, float]) -> None:
    """Log each ``tag: value`` of ``values`` as a scalar at ``step``."""
    with writer.as_default():
        for tag, value in values.items():
            tf.summary.scalar(tag, float(value), step=step)


def image_with_boxes(
    writer: Any,
    tag: str,
    step: int,
    rgb: np.ndarray,
    boxes: np.ndarray | Sequence[Sequence[float]],
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """Draw ``[x1, y1, x2, y2]`` boxes with labels on an RGB uint8 image and log it.

    Returns the drawn image, so the same picture can also be saved or shown.
    """
    drawn = draw_boxes(rgb, boxes, labels)
    with writer.as_default():
        tf.summary.image(tag, drawn[None], step=step)
    return drawn


def pr_curve(
    writer: Any,
    tag: str,
    step: int,
    labels: np.ndarray | Sequence[bool],
    scores: np.ndarray | Sequence[float],
    num_thresholds: int = 201,
    description: str = "",
) -> np.ndarray:
    """Log a precision-recall curve for binary ``labels`` and ``scores`` in [0, 1].

    The curve is computed by the PR-curves plugin itself (``pr_curve.summary.pb``), so the
    slider in TensorBoard matches its figures; here the inputs are checked first (the plugin
    silently drops scores outside [0, 1]) and the result is written with the TF2 writer.
    For several classes call it once per class (e.g. ``tag=f"pr/{name}"``). Returns the
    logged (6, num_thresholds) table: TP, FP, TN, FN, precision, recall per threshold.
    """
    from tensorboard.plugins.pr_curve import summary as pr_summary

    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"{labels.size} labels for {scores.size} scores")
    if num_thresholds < 2:
        raise ValueError(f"num_thresholds must be >= 2, got {num_thresholds}")
    if scores.size and (scores.min() < 0 or scores.max() > 1):
        raise ValueError("scores must lie in [0, 1]")
    (value,) = pr_summary.pb(
        tag, labels, scores, num_thresholds=num_thresholds, description=description
    ).value
    table = tf.make_ndarray(value.tensor)
    with writer.as_default():
        tf.summary.write(tag, table, step=step, metadata=value.metadata.SerializeToString())
    return table


def _sprite(images: np.ndarray) -> np.ndarray:
    """Tile N equally sized RGB images into the square grid the projector expects."""
    count, height, width = images.shape[:3]
    columns = math.ceil(math.sqrt(count))
    if columns * max(height, width) > _MAX_SPRITE_SIDE:
        raise ValueError(
            f"{count} images of {width}x{height} exceed the {_MAX_SPRITE_SIDE} px sprite"
        )
    grid = np.full((columns * height, columns * width, 3), 255, dtype=np.uint8)
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    return grid


def embedding_projector(
    logdir: str | os.PathLike[str],
    embeddings: np.ndarray,
    labels: Sequence[str],
    images: np.ndarray | None = None,
) -> Path:
    """Make ``logdir`` show ``embeddings`` (N x D) in TensorBoard's projector.

    Writes a checkpoint holding the matrix, ``metadata.tsv`` (one label per row)
    and ``projector_config.pbtxt``; with ``images`` (N x h x w x 3 uint8, e.g.
    face chips) also a sprite so each point shows its picture. Use one folder
    per projection: the config names a single embedding. Returns the checkpoint
    prefix.
    """
    from tensorboard.plugins import projector

    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2 or len(labels) != len(embeddings):
        raise ValueError(
            f"need N x D embeddings and N labels, got {embeddings.shape}, {len(labels)}"
        )
    logdir = Path(logdir)
    logdir.mkdir(parents=True, exist_ok=True)
    with atomic_output(logdir / METADATA_FILENAME) as temp:
        # A tab or newline inside a label would shift every later row.
        rows = (" ".join(str(label).split()) for label in labels)
        temp.write_text("".join(f"{row}\n" for row in rows), "utf-8")
    checkpoint = tf.train.Checkpoint(**{EMBEDDING_VARIABLE: tf.Variable(embeddings)})
    prefix = Path(checkpoint.save(str(logdir / "embedding.ckpt")))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = EMBEDDING_TENSOR_NAME
    embedding.metadata_path = METADATA_FILENAME
    if images is not None:
        images = np.asarray(images)
        if images.ndim != 4 or len(images) != len(embeddings) or images.dtype != np.uint8:
            raise ValueError(f"need N x h x w x 3 uint8 images, got {images.shape} {images.dtype}")
        write_image(logdir / SPRITE_FILENAME, _sprite(images))
        embedding.sprite.image_path = SPRITE_FILENAME
        embedding.sprite.single_image_dim.extend([images.shape[2], images.shape[1]])
    projector.visualize_embeddings(str(logdir), config)
    return prefix


def tensorboard_callback(
    logdir: str | os.PathLike[str], **overrides: Any
) -> keras.callbacks.TensorBoard:
    """Keras's TensorBoard callback with laptop-friendly defaults.

    Per-epoch scalars under ``logdir/train`` and ``logdir/validation``; no
    weight histograms, graph dump or profiler, which cost seconds per epoch on a
    CPU. Any keyword of ``keras.callbacks.TensorBoard`` overrides these.
    """
    settings: dict[str, Any] = {
        "histogram_freq": 0,
        "write_graph": False,
        "update_freq": "epoch",
        "profile_batch": 0,
    }
    settings.update(overrides)
    return keras.callbacks.TensorBoard(log_dir=str(logdir), **settings)
