"""The trainable YOLO task model: a backbone of raw head maps plus what training and detection need.

``YoloTask`` is a ``keras.Model`` in keras-hub's shape: it owns its preprocessing (uint8 or 0..1
images, scaled inside the graph), its loss (``compute_loss``, so training is ``fit``) and its
decoding (``detection_network``: the same layers followed by ``layers.DetectionHead``), and its
spec (class names, anchors per head, input size, ``scale_x_y``) is part of its config, so a saved
``.keras`` file is all ``detect-cars --model PATH`` needs.

The loss is YOLOv3/v4's, per object (each part is summed over the batch and divided by the
number of objects assigned):

- *box*: 1 - GIoU between the decoded prediction and the object, for every anchor assigned;
- *objectness*: binary cross-entropy, 1 for assigned anchors, 0 for the others except those
  whose prediction already overlaps some object (any class, ignored ones too) by more than
  ``ignore_thresh``, which are left alone (YOLOv3's ignore rule);
- *class*: binary cross-entropy of each class's logit for the assigned anchors (independent
  logistic classes, as ``[yolo]`` heads decode them).

An object is assigned (``encode_targets``) to its cell in the head whose anchor matches its
shape best, and also to every other anchor whose shape IoU exceeds ``IOU_ASSIGN`` (YOLOv4's
``iou_thresh=0.213``): more positives per object, which helps a small dataset.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np
from keras import ops

from apps.car_detection.darknet import DarknetModel
from apps.car_detection.layers import DetectionHead
from shared.saving import load_saved_model

SERIALIZATION_PACKAGE = "convnet_apps.yolo"
IOU_ASSIGN = 0.213
MAX_OBJECTS = 100  # objects per image kept for the ignore rule (more are very rare)


def anchor_shape_iou(sizes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU of (N, 2) box sizes with (K, 2) anchor sizes, both centred at the same point."""
    inter = np.minimum(sizes[:, None, 0], anchors[None, :, 0]) * np.minimum(
        sizes[:, None, 1], anchors[None, :, 1]
    )
    union = (sizes[:, 0] * sizes[:, 1])[:, None] + (anchors[:, 0] * anchors[:, 1])[None] - inter
    return inter / np.maximum(union, 1e-12)


def kmeans_anchors(
    sizes: np.ndarray, count: int, seed: int = 0, iterations: int = 100
) -> np.ndarray:
    """``count`` anchor sizes from k-means on (N, 2) box sizes with 1 - IoU as distance.

    The YOLOv2/v3 recipe; returned sorted by area, as the ``[yolo]`` masks expect.
    """
    sizes = np.asarray(sizes, dtype=np.float64)
    if len(sizes) < count:
        raise ValueError(f"{len(sizes)} boxes cannot make {count} anchors")
    rng = np.random.default_rng(seed)
    centres = sizes[rng.choice(len(sizes), count, replace=False)]
    for _ in range(iterations):
        nearest = anchor_shape_iou(sizes, centres).argmax(axis=1)
        updated = np.array(
            [
                np.median(sizes[nearest == k], axis=0) if np.any(nearest == k) else centres[k]
                for k in range(count)
            ]
        )
        if np.allclose(updated, centres):
            break
        centres = updated
    return centres[np.argsort(centres.prod(axis=1))]


def encode_targets(
    boxes: np.ndarray,
    classes: np.ndarray,
    grids: Sequence[tuple[int, int]],
    anchors: Sequence[Sequence[Sequence[float]]],
    input_size: tuple[int, int],
    num_classes: int,
) -> tuple[list[np.ndarray], np.ndarray]:
    """One image's training targets.

    ``boxes`` are normalised xyxy, ``classes`` model class ids (-1: an ignored object, which
    only shields predictions from the objectness penalty). Returns one (H, W, A, 5 + C) array
    per head (``cx, cy, w, h`` normalised, objectness 1, one-hot classes) and a
    (MAX_OBJECTS, 4) array of every object's box (zeros: none).
    """
    width, height = input_size
    targets = [
        np.zeros((h, w, len(a), 5 + num_classes), np.float32)
        for (h, w), a in zip(grids, anchors, strict=True)
    ]
    every = np.zeros((MAX_OBJECTS, 4), np.float32)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    every[: min(len(boxes), MAX_OBJECTS)] = boxes[:MAX_OBJECTS]
    labelled = np.asarray(classes) >= 0
    boxes, classes = boxes[labelled], np.asarray(classes)[labelled]
    if not len(boxes):
        return targets, every
    flat = np.array([pair for head in anchors for pair in head], dtype=np.float64)
    owner = [(h, a) for h, head in enumerate(anchors) for a in range(len(head))]
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sizes = boxes[:, 2:] - boxes[:, :2]
    overlaps = anchor_shape_iou(sizes * [width, height], flat)
    for index in range(len(boxes)):
        chosen = set(np.flatnonzero(overlaps[index] > IOU_ASSIGN)) | {int(overlaps[index].argmax())}
        for k in chosen:
            head, anchor = owner[k]
            grid_h, grid_w = grids[head]
            column = min(int(centres[index, 0] * grid_w), grid_w - 1)
            row = min(int(centres[index, 1] * grid_h), grid_h - 1)
            cell = targets[head][row, column, anchor]
            cell[:] = 0.0
            cell[:2], cell[2:4], cell[4] = centres[index], sizes[index], 1.0
            cell[5 + int(classes[index])] = 1.0
    return targets, every


def _xyxy(cxcywh):
    centre, size = cxcywh[..., :2], cxcywh[..., 2:4]
    return ops.concatenate([centre - size / 2, centre + size / 2], axis=-1)


def _area(xyxy):
    return ops.maximum(xyxy[..., 2] - xyxy[..., 0], 0.0) * ops.maximum(
        xyxy[..., 3] - xyxy[..., 1], 0.0
    )


def _intersection(a, b):
    top_left = ops.maximum(a[..., :2], b[..., :2])
    bottom_right = ops.minimum(a[..., 2:], b[..., 2:])
    size = ops.maximum(bottom_right - top_left, 0.0)
    return size[..., 0] * size[..., 1]


def giou(a, b):
    """Generalised IoU of xyxy boxes, elementwise (Rezatofighi et al. 2019)."""
    inter = _intersection(a, b)
    union = _area(a) + _area(b) - inter
    iou = inter / ops.maximum(union, 1e-9)
    hull = ops.concatenate(
        [ops.minimum(a[..., :2], b[..., :2]), ops.maximum(a[..., 2:], b[..., 2:])], -1
    )
    hull_area = _area(hull)
    return iou - (hull_area - union) / ops.maximum(hull_area, 1e-9)


def pairwise_iou(a, b):
    """IoU of (B, N, 4) with (B, M, 4) xyxy boxes -> (B, N, M)."""
    inter = _intersection(a[:, :, None, :], b[:, None, :, :])
    union = _area(a)[:, :, None] + _area(b)[:, None, :] - inter
    return inter / ops.maximum(union, 1e-9)


@keras.saving.register_keras_serializable(package=SERIALIZATION_PACKAGE)
class YoloTask(keras.Model):
    """A YOLO detector to train with ``fit`` and to save as one ``.keras`` file.

    ``backbone`` maps 0..1 RGB images (B, height, width, 3) to raw ``[yolo]`` head maps
    (B, H, W, A * (5 + C)); ``anchors[h]`` are head ``h``'s anchor sizes in input pixels.
    ``call`` accepts uint8 pixels too (scaled by 1/255 in the graph).
    """

    def __init__(
        self,
        backbone: keras.Model,
        names: Sequence[str],
        anchors: Sequence[Sequence[Sequence[float]]],
        scale_x_y: Sequence[float] | None = None,
        ignore_thresh: float = 0.5,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.backbone = backbone
        self.names = list(names)
        self.anchors = [[[float(w), float(h)] for w, h in head] for head in anchors]
        self.scale_x_y = [float(s) for s in (scale_x_y or [1.0] * len(self.anchors))]
        self.ignore_thresh = float(ignore_thresh)
        _, self.input_height, self.input_width, _ = backbone.input.shape
        self.grids = [tuple(output.shape[1:3]) for output in backbone.outputs]
        expected = [len(a) * (5 + len(self.names)) for a in self.anchors]
        found = [output.shape[-1] for output in backbone.outputs]
        if expected != found:
            raise ValueError(f"head channels {found} do not fit anchors and classes ({expected})")
        self.trackers = {
            part: keras.metrics.Mean(name=f"{part}_loss") for part in ("box", "obj", "cls")
        }
        self.built = True  # every weight is the backbone's, which is built

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def input_size(self) -> tuple[int, int]:
        return self.input_width, self.input_height

    def call(self, images, training=False):
        if "uint8" in str(images.dtype):
            images = ops.cast(images, "float32") / 255.0
        return self.backbone(images, training=training)

    # --- decoding ---------------------------------------------------------------------------

    def head_configs(self) -> list[dict]:
        return [
            {
                "kind": "yolo",
                "anchors": anchors,
                "classes": self.num_classes,
                "scale_x_y": scale,
                "input_width": self.input_width,
                "input_height": self.input_height,
            }
            for anchors, scale in zip(self.anchors, self.scale_x_y, strict=True)
        ]

    def detection_network(self) -> DarknetModel:
        """The same layers (shared weights), then ``DetectionHead``s: what detect-cars runs."""
        maps = self.backbone.outputs
        rows = [
            DetectionHead(**config, name=f"yolo_{index}")(tensor)
            for index, (config, tensor) in enumerate(zip(self.head_configs(), maps, strict=True))
        ]
        model = keras.Model(self.backbone.input, rows, name=f"{self.name}_detect")
        return DarknetModel(
            model, self.input_width, self.input_height, self.num_classes, self.head_configs()
        )

    # --- loss -------------------------------------------------------------------------------

    def _decode(self, raw, head: int):
        """Raw map -> (cells, decoded cxcywh normalised) for head ``head``."""
        grid_h, grid_w = self.grids[head]
        count = len(self.anchors[head])
        cells = ops.reshape(raw, (-1, grid_h, grid_w, count, 5 + self.num_classes))
        column = ops.reshape(ops.arange(grid_w, dtype="float32"), (1, 1, grid_w, 1))
        row = ops.reshape(ops.arange(grid_h, dtype="float32"), (1, grid_h, 1, 1))
        scale = self.scale_x_y[head]
        offsets = (ops.sigmoid(cells[..., 0:2]) - 0.5) * scale + 0.5
        anchors = ops.convert_to_tensor(self.anchors[head], dtype="float32")
        size = (
            ops.exp(ops.clip(cells[..., 2:4], -10.0, 6.0))
            * anchors
            / [self.input_width, self.input_height]
        )
        centre = ops.stack(
            [(column + offsets[..., 0]) / grid_w, (row + offsets[..., 1]) / grid_h], -1
        )
        return cells, ops.concatenate([centre, size], axis=-1)

    def loss_parts(self, y, y_pred):
        """(box, objectness, class) losses summed over the batch, and the number of objects."""
        *targets, every = y
        every = ops.cast(every, "float32")
        valid = ops.cast(_area(every) > 0, "float32")
        box = obj = cls = 0.0
        objects = 0.0
        for head, (raw, target) in enumerate(zip(y_pred, targets, strict=True)):
            target = ops.cast(target, "float32")
            cells, decoded = self._decode(raw, head)
            predicted = _xyxy(decoded)
            positive = target[..., 4]
            objects = objects + ops.sum(positive)
            shape = ops.shape(predicted)
            flat = ops.reshape(predicted, (shape[0], -1, 4))
            overlap = pairwise_iou(flat, every) * valid[:, None, :]
            best = ops.reshape(ops.max(overlap, axis=-1), ops.shape(positive))
            negative = (1.0 - positive) * ops.cast(best <= self.ignore_thresh, "float32")
            box = box + ops.sum(positive * (1.0 - giou(predicted, _xyxy(target[..., :4]))))
            obj = obj + ops.sum((positive + negative) * _bce(positive, cells[..., 4]))
            cls_bce = ops.sum(_bce(target[..., 5:], cells[..., 5:]), axis=-1)
            cls = cls + ops.sum(positive * cls_bce)
        return box, obj, cls, objects

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        import tensorflow as tf

        box, obj, cls, objects = self.loss_parts(y, y_pred)
        per_object = 1.0 / ops.maximum(objects, 1.0)
        parts = {"box": box * per_object, "obj": obj * per_object, "cls": cls * per_object}
        for name, value in parts.items():
            self.trackers[name].update_state(value)
        total = parts["box"] + parts["obj"] + parts["cls"]
        # Keras reports the loss multiplied back by the replica count (see its trainer).
        return total / tf.distribute.get_strategy().num_replicas_in_sync

    @property
    def metrics(self):
        return [*super().metrics, *self.trackers.values()]

    # --- saving -----------------------------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "names": self.names,
            "anchors": self.anchors,
            "scale_x_y": self.scale_x_y,
            "ignore_thresh": self.ignore_thresh,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def _bce(labels, logits):
    """Elementwise binary cross-entropy from logits, numerically stable."""
    return ops.maximum(logits, 0.0) - logits * labels + ops.log1p(ops.exp(-ops.abs(logits)))


def load_task(path) -> YoloTask:
    """A ``YoloTask`` saved by ``detect-cars-train`` (``.keras``), or InputError naming the file."""
    return load_saved_model(path, YoloTask, "a YOLO model", "detect-cars-train")
