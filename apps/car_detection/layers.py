"""Keras layers for the Darknet operations that Keras has no exact twin for.

Each layer reproduces Darknet's arithmetic exactly (OpenCV's Darknet importer is the oracle in
the tests): max pooling with Darknet's asymmetric padding, Darknet's ``reorg`` (which is not
``tf.nn.space_to_depth``), route ``groups`` and the ``region`` / ``yolo`` heads.

The heads output one row per anchor per cell, ordered (row, column, anchor) like OpenCV:
``[cx, cy, w, h, objectness, objectness * p(class) ...]`` with the box normalised to the network
input (0..1). Unlike OpenCV they do not zero class scores under a threshold or run NMS: that is
the job of the detection step, so that the raw head stays comparable and trainable.
"""

from __future__ import annotations

import math

import keras
from keras import ops

SERIALIZATION_PACKAGE = "convnet_apps.darknet"


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class DarknetMaxPool(keras.layers.Layer):
    """Max pooling after padding top/left and bottom/right with -inf, as Darknet does.

    Darknet pads ``padding // 2`` before and the rest after (``padding`` defaults to
    ``size - 1``), which differs from Keras ``'same'`` for some size/stride combinations.
    Padded cells never win the max because they hold -inf.
    """

    def __init__(self, size: int, stride: int, pad_before: int, pad_after: int, **kwargs):
        super().__init__(**kwargs)
        self.size = size
        self.stride = stride
        self.pad_before = pad_before
        self.pad_after = pad_after

    def call(self, inputs):
        padded = ops.pad(
            inputs,
            [[0, 0], [self.pad_before, self.pad_after], [self.pad_before, self.pad_after], [0, 0]],
            constant_values=-math.inf,
        )
        return ops.max_pool(padded, self.size, self.stride, padding="valid")

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        span = self.pad_before + self.pad_after - self.size
        out_height = (height + span) // self.stride + 1
        out_width = (width + span) // self.stride + 1
        return (batch, out_height, out_width, channels)

    def get_config(self):
        return {
            **super().get_config(),
            "size": self.size,
            "stride": self.stride,
            "pad_before": self.pad_before,
            "pad_after": self.pad_after,
        }


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class DarknetReorg(keras.layers.Layer):
    """Darknet's ``reorg``: (H, W, C) -> (H/s, W/s, C*s*s) in Darknet's own element order.

    Darknet's ``reorg_cpu(..., forward=0)`` reads the NCHW input buffer as if it had shape
    (C/s², H*s, W*s), gathers stride-s phases from that view into a (C, H, W) buffer, and the
    next layer reads that buffer as (C*s², H/s, W/s). Pretrained YOLOv2 weights were learned with
    this order, so the reshape/transpose chain below follows it step by step.
    """

    def __init__(self, stride: int, **kwargs):
        super().__init__(**kwargs)
        self.stride = stride

    def call(self, inputs):
        s = self.stride
        _, height, width, channels = inputs.shape
        phase_channels = channels // (s * s)
        nchw = ops.transpose(inputs, (0, 3, 1, 2))
        view = ops.reshape(nchw, (-1, phase_channels, height, s, width, s))
        gathered = ops.transpose(view, (0, 3, 5, 1, 2, 4))
        reinterpreted = ops.reshape(gathered, (-1, channels * s * s, height // s, width // s))
        return ops.transpose(reinterpreted, (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        s = self.stride
        return (batch, height // s, width // s, channels * s * s)

    def get_config(self):
        return {**super().get_config(), "stride": self.stride}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class ChannelGroup(keras.layers.Layer):
    """The ``group_id``-th of ``groups`` equal channel slices (route ``groups=``, YOLOv4-tiny)."""

    def __init__(self, groups: int, group_id: int, **kwargs):
        super().__init__(**kwargs)
        self.groups = groups
        self.group_id = group_id

    def call(self, inputs):
        size = inputs.shape[-1] // self.groups
        return inputs[..., self.group_id * size : (self.group_id + 1) * size]

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], input_shape[-1] // self.groups)

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "group_id": self.group_id}


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class DetectionHead(keras.layers.Layer):
    """Decode a (B, H, W, A*(5+C)) head map into (B, H*W*A, 5+C) rows.

    ``kind="yolo"`` (YOLOv3/v4 ``[yolo]``): logistic offsets stretched by ``scale_x_y``, anchors
    in network-input pixels, independent logistic class probabilities.
    ``kind="region"`` (YOLOv2 ``[region]``): logistic offsets, anchors in grid cells, softmax
    over classes. Either way the centre is ``(cell + offset) / grid``, so every box is a
    fraction of the network input.
    """

    KINDS = ("yolo", "region")

    def __init__(
        self,
        kind: str,
        anchors: list[list[float]],
        classes: int,
        scale_x_y: float = 1.0,
        input_width: int = 0,
        input_height: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if kind not in self.KINDS:
            raise ValueError(f"kind must be one of {self.KINDS}, got {kind!r}")
        if kind == "yolo" and (input_width <= 0 or input_height <= 0):
            raise ValueError("a yolo head needs the network input size (anchors are in pixels)")
        self.kind = kind
        self.anchors = [[float(w), float(h)] for w, h in anchors]
        self.classes = classes
        self.scale_x_y = float(scale_x_y)
        self.input_width = input_width
        self.input_height = input_height

    def call(self, inputs):
        _, grid_height, grid_width, _ = inputs.shape
        count = len(self.anchors)
        cells = ops.reshape(inputs, (-1, grid_height, grid_width, count, 5 + self.classes))
        column = ops.reshape(ops.arange(grid_width, dtype=cells.dtype), (1, 1, grid_width, 1))
        row = ops.reshape(ops.arange(grid_height, dtype=cells.dtype), (1, grid_height, 1, 1))
        offsets = ops.sigmoid(cells[..., 0:2])
        if self.kind == "yolo":
            offsets = (offsets - 0.5) * self.scale_x_y + 0.5
            width_unit, height_unit = float(self.input_width), float(self.input_height)
            probabilities = ops.sigmoid(cells[..., 5:])
        else:
            width_unit, height_unit = float(grid_width), float(grid_height)
            probabilities = ops.softmax(cells[..., 5:], axis=-1)
        anchors = ops.convert_to_tensor(self.anchors, dtype=cells.dtype)
        objectness = ops.sigmoid(cells[..., 4])
        columns = [
            (column + offsets[..., 0]) / grid_width,
            (row + offsets[..., 1]) / grid_height,
            ops.exp(cells[..., 2]) * anchors[:, 0] / width_unit,
            ops.exp(cells[..., 3]) * anchors[:, 1] / height_unit,
            objectness,
        ]
        boxes = ops.stack(columns, axis=-1)
        decoded = ops.concatenate([boxes, probabilities * objectness[..., None]], axis=-1)
        return ops.reshape(decoded, (-1, grid_height * grid_width * count, 5 + self.classes))

    def compute_output_shape(self, input_shape):
        batch, grid_height, grid_width, _ = input_shape
        return (batch, grid_height * grid_width * len(self.anchors), 5 + self.classes)

    def get_config(self):
        return {
            **super().get_config(),
            "kind": self.kind,
            "anchors": self.anchors,
            "classes": self.classes,
            "scale_x_y": self.scale_x_y,
            "input_width": self.input_width,
            "input_height": self.input_height,
        }
