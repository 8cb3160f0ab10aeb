"""A trained style as one Keras model: the feed-forward half of style transfer (Johnson et al.).

``StyleNetwork`` is the task model (keras-hub's shape): it owns its preprocessing (any RGB
image in [0, 255], any size: reflection padding to the network's stride and back), the image
transformer of ``shared.backbones.image_transformer`` and what a user needs to know about the
style it paints: a thumbnail of the style image and the settings it was trained with, both
saved inside the ``.keras`` file.

``load_style`` reads such a file with one clear error for anything else; ``painter`` wraps it
for inference on RGB uint8 frames (``feedforward.load_painter`` runs that through
``shared.runtime``: OpenVINO, or TensorFlow).
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np
import tensorflow as tf

from shared.backbones.image_transformer import WIDTHS, image_transformer
from shared.saving import load_saved_model

THUMBNAIL_SIDE = 128
# Reflection padding around every image: the network's 9x9 (5x5) outer convolutions and the
# 3x3 ones below would otherwise see a black frame and paint a border.
BORDER = 16


def thumbnail_jpeg(rgb: np.ndarray, side: int = THUMBNAIL_SIDE) -> str:
    """A JPEG of ``rgb`` at ``side`` px on its longest side, base64 text (fits a model config)."""
    factor = side / max(rgb.shape[:2])
    size = (max(1, round(rgb.shape[1] * factor)), max(1, round(rgb.shape[0] * factor)))
    small = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("cannot encode the style thumbnail")
    return base64.b64encode(encoded.tobytes()).decode("ascii")


@keras.saving.register_keras_serializable(package="convnet_apps")
class StyleNetwork(keras.Model):
    """Paints images in one style: ``model(images)`` maps (B, H, W, 3) [0, 255] to the same.

    ``style_name``, ``style_thumbnail`` (base64 JPEG, see ``thumbnail_jpeg``) and ``settings``
    (the training run's options and losses, JSON-serialisable) travel with the weights.
    """

    def __init__(
        self,
        width: str = "full",
        style_name: str = "",
        style_thumbnail: str = "",
        settings: dict[str, Any] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.width = width
        self.style_name = style_name
        self.style_thumbnail = style_thumbnail
        self.settings = dict(settings or {})
        self.transformer = image_transformer(width)

    def call(self, images):
        images = tf.cast(images, tf.float32)
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        # Reflect BORDER px on every side, plus what brings each side to a multiple of STRIDE.
        stride = WIDTHS[self.width].stride
        extra_h = (-(height + 2 * BORDER)) % stride
        extra_w = (-(width + 2 * BORDER)) % stride
        padded = tf.pad(
            images,
            [[0, 0], [BORDER, BORDER + extra_h], [BORDER, BORDER + extra_w], [0, 0]],
            mode="REFLECT",
        )
        painted = self.transformer(padded)
        return painted[:, BORDER : BORDER + height, BORDER : BORDER + width, :]

    def compute_output_shape(self, input_shape):
        return input_shape  # the painting has the image's size (see ``call``)

    def thumbnail(self) -> np.ndarray | None:
        """The style image's thumbnail as RGB uint8, None when the model carries none."""
        if not self.style_thumbnail:
            return None
        data = np.frombuffer(base64.b64decode(self.style_thumbnail), np.uint8)
        return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)

    def get_config(self):
        return {
            **super().get_config(),
            "width": self.width,
            "style_name": self.style_name,
            "style_thumbnail": self.style_thumbnail,
            "settings": self.settings,
        }


def load_style(path: str | Path) -> StyleNetwork:
    """A ``StyleNetwork`` from a ``.keras`` file, or one ``InputError`` line naming the file."""
    return load_saved_model(path, StyleNetwork, "a style model", "stylize-train")


@keras.saving.register_keras_serializable(package="convnet_apps")
class _RoundToUint8(keras.layers.Layer):
    """Paintings (already in [0, 255]: the transformer ends in a ReLU capped at 255) as uint8."""

    def call(self, painted):
        return keras.ops.cast(keras.ops.round(painted), "uint8")


def painter(network: StyleNetwork) -> keras.Model:
    """The graph an inference runtime runs: RGB uint8 frames of any batch and size in, uint8
    paintings of the same shape out (no float copy of a frame leaves the graph).

    A change here or in the network must change ``feedforward.PAINTER_GRAPH``.
    """
    frames = keras.Input((None, None, 3), dtype="uint8", name="frames")
    painted = _RoundToUint8(name="painted_uint8")(network(frames))
    return keras.Model(frames, painted, name=f"painter_{network.width}")
