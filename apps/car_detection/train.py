"""Fine-tune (or train from scratch) a YOLO detector on a labelled dataset: ``detect-cars-train``.

The pieces, in the order ``train`` uses them:

1. ``start_task``: the starting ``YoloTask`` from a Darknet model (BN kept as layers so it can be
   fine-tuned; random weights with ``from_scratch``) or a ``.keras`` file. Its classes are the
   dataset's (after ``--class-map``; a class the base model knows keeps the base's name). When
   they differ from the base's, each ``[yolo]`` head's last 1x1 convolution is replaced by one
   with the new channel count whose box and objectness rows, and the rows of every class the
   base knows, are copied from the old one: fine-tuning starts from the pretrained detector.
   Anchors stay the base's (its box regressions were learned for them) unless ``anchors=
   "kmeans"`` (the default from scratch): k-means on the training boxes (``yolo.kmeans_anchors``).
2. ``DetectionBatches``: a ``keras.utils.PyDataset`` that reads images, augments them with
   albumentations keeping the boxes right (flip, scale/translate, colour jitter), resizes to
   the network input and encodes targets (``yolo.encode_targets``).
3. Two phases of ``fit``: the backbone frozen (only the head convolutions learn) for
   ``freeze_epochs``, then every layer at ``lr * backbone_lr``; each phase warms the learning
   rate up linearly and then decays it along a cosine. Batch normalisation stays in inference
   mode throughout (its statistics come from COCO and batches of 8 would only add noise).
4. ``EpochEnd``: after each epoch, mAP on the validation split (``evaluate.evaluate``, the same
   code as ``detect-cars-eval``), TensorBoard summaries, ``best.keras`` when the validation
   mAP@0.5 improves, ``last.keras`` + ``state.json`` always, and early stopping.

Ctrl-C saves ``last.keras`` and the state; ``resume=True`` continues from them.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from apps.car_detection.datasets import Dataset, Sample, class_key
from apps.car_detection.results import Detection
from apps.car_detection.yolo import YoloTask, encode_targets, kmeans_anchors, load_task
from shared.distribute import distribution_strategy, fit_scope, worker_seed
from shared.errors import InputError
from shared.files import atomic_output
from shared.images import read_image

CHECKPOINT_BEST = "best.keras"
CHECKPOINT_LAST = "last.keras"
STATE_FILE = "state.json"
PSEUDO_LABEL_CONF = 0.5  # pseudo-labels at or above this score are objects
PSEUDO_LABEL_UNSURE = 0.1  # ... between this and PSEUDO_LABEL_CONF, ignored regions


@dataclass
class TrainSettings:
    """Every choice of a training run (saved beside the checkpoints as ``state.json``)."""

    epochs: int = 30
    freeze_epochs: int = 3
    batch: int = 8
    lr: float = 1e-4
    backbone_lr: float = 0.3
    warmup_epochs: float = 1.0
    patience: int = 6
    augment: bool = True
    anchors: str = "auto"
    ignore_thresh: float = 0.5
    seed: int = 0
    sample_images: int = 4
    max_minutes: float | None = None


@dataclass
class TrainState:
    """Where a run is: the next epoch, the best validation mAP@0.5 and when it was reached."""

    epoch: int = 0
    best_map50: float = -1.0
    best_epoch: int = -1
    replicas: int = 1
    history: list[dict] = field(default_factory=list)


# --- the starting model ---------------------------------------------------------------------


def target_names(
    dataset_names: Sequence[str], overrides: dict[str, str], base_names: Sequence[str]
):
    """(model class names, dataset class -> model class id or None) for training.

    A dataset class becomes the class its ``--class-map`` target names (default: itself), spelt
    as the base model spells it when the base knows it; ``ignore`` drops it.
    """
    base = {class_key(name): name for name in base_names}
    chosen = {class_key(source): target for source, target in overrides.items()}
    names: list[str] = []
    mapping: list[int | None] = []
    for name in dataset_names:
        target = chosen.get(class_key(name), name)
        if target.lower() == "ignore":
            mapping.append(None)
            continue
        spelt = base.get(class_key(target), target)
        if spelt not in names:
            names.append(spelt)
        mapping.append(names.index(spelt))
    if not names:
        raise InputError("--class-map ignores every class of the dataset: nothing to train")
    return names, mapping


def _head_convolutions(backbone: keras.Model) -> list[keras.layers.Layer]:
    """The layer producing each output of the backbone, in output order."""
    producers = {}
    for layer in backbone.layers:
        for number, output in enumerate(backbone.outputs):
            if layer.output is output:
                producers[number] = layer
    return [producers[number] for number in range(len(backbone.outputs))]


def replace_heads(
    backbone: keras.Model,
    old_names: Sequence[str],
    new_names: Sequence[str],
    anchors_per_head: Sequence[int],
    seed: int = 0,
) -> keras.Model:
    """The backbone with each head's last convolution re-made for ``new_names``.

    Box and objectness rows are copied; a class's rows come from the old class of the same name
    (synonyms included), other classes start at probability ~0.01 (bias -4.6).
    """
    rng = np.random.default_rng(seed)
    old_index = {class_key(name): number for number, name in enumerate(old_names)}
    old_width, new_width = 5 + len(old_names), 5 + len(new_names)
    outputs = []
    for conv, count in zip(_head_convolutions(backbone), anchors_per_head, strict=True):
        if (
            not isinstance(conv, keras.layers.Conv2D)
            or conv.kernel_size != (1, 1)
            or not conv.use_bias
        ):
            raise InputError(f"layer {conv.name}: a head must end in a 1x1 convolution with bias")
        kernel, bias = conv.get_weights()
        new_kernel = rng.normal(0.0, 0.01, (*kernel.shape[:3], count * new_width)).astype(
            np.float32
        )
        new_bias = np.full(count * new_width, -4.6, dtype=np.float32)
        for anchor in range(count):
            rows_old = [anchor * old_width + k for k in range(5)]
            rows_new = [anchor * new_width + k for k in range(5)]
            for number, name in enumerate(new_names):
                if class_key(name) in old_index:
                    rows_old.append(anchor * old_width + 5 + old_index[class_key(name)])
                    rows_new.append(anchor * new_width + 5 + number)
            new_kernel[..., rows_new] = kernel[..., rows_old]
            new_bias[rows_new] = bias[rows_old]
        head = keras.layers.Conv2D(
            count * new_width, 1, name=f"{conv.name}_{len(new_names)}_classes"
        )
        outputs.append(head(conv.input))
        head.set_weights([new_kernel, new_bias])
    return keras.Model(backbone.input, outputs, name=backbone.name)


def _darknet_backbone(model: str | None, cfg, weights, size: int | None, from_scratch: bool):
    from apps.car_detection.catalogue import darknet_files
    from apps.car_detection.cfg import read_cfg
    from apps.car_detection.darknet import build_model, plan_network, read_darknet_weights

    cfg_path, weights_path = darknet_files(model, cfg, weights)
    plan = plan_network(read_cfg(cfg_path), (size, size) if size else None)
    if any(layer.section.type != "yolo" for layer in (plan.layers[i] for i in plan.head_indices)):
        raise InputError(f"{cfg_path}: training needs [yolo] heads (YOLOv3/v4 style)")
    parameters = None if from_scratch else read_darknet_weights(weights_path, plan)
    network = build_model(plan, parameters, fold_batch_norm=False, decode=False)
    return network


def start_task(
    dataset_names: Sequence[str],
    overrides: dict[str, str],
    train_boxes: np.ndarray,
    settings: TrainSettings,
    *,
    model: str | None = None,
    cfg=None,
    weights=None,
    names_file=None,
    size: int | None = None,
    from_scratch: bool = False,
) -> tuple[YoloTask, list[int | None]]:
    """The model to train and the dataset -> model class map (see the module docstring)."""
    from apps.car_detection.catalogue import read_class_names

    if model and model.endswith(".keras"):
        task = load_task(model)
        backbone, base_names, anchors, scales = (
            task.backbone,
            task.names,
            task.anchors,
            task.scale_x_y,
        )
    else:
        network = _darknet_backbone(model, cfg, weights, size, from_scratch)
        backbone, base_names = network.model, read_class_names(names_file)
        if len(base_names) != network.classes:
            raise InputError(
                f"{names_file or 'COCO names'}: {len(base_names)} names, "
                f"{network.classes} classes in the model"
            )
        anchors = [head["anchors"] for head in network.heads]
        scales = [head["scale_x_y"] for head in network.heads]
    names, mapping = target_names(dataset_names, overrides, base_names)
    width = backbone.input.shape[2]
    if settings.anchors == "kmeans" or (settings.anchors == "auto" and from_scratch):
        counts = [len(head) for head in anchors]
        if len(train_boxes) < sum(counts):
            raise InputError(f"{len(train_boxes)} training boxes cannot make {sum(counts)} anchors")
        found = kmeans_anchors(train_boxes * width, sum(counts), settings.seed)
        # Largest anchors to the coarsest grid (the first [yolo] head in Darknet cfgs).
        grids = [output.shape[1] for output in backbone.outputs]
        order = np.argsort(grids)
        anchors, start = [None] * len(counts), 0
        for head in order:
            anchors[head] = found[::-1][start : start + counts[head]][::-1].round(1).tolist()
            start += counts[head]
    if list(names) != list(base_names):
        backbone = replace_heads(
            backbone, base_names, names, [len(a) for a in anchors], settings.seed
        )
    task = YoloTask(backbone, names, anchors, scales, settings.ignore_thresh, name="yolo_task")
    return task, mapping


# --- data -----------------------------------------------------------------------------------


def augmentation(width: int, height: int, augment: bool):
    """Albumentations pipeline on normalised xyxy boxes, ending at the network input size."""
    import albumentations as A
    import cv2

    steps = []
    if augment:
        steps = [
            A.HorizontalFlip(p=0.5),
            A.Affine(
                scale=(0.7, 1.3),
                translate_percent=(-0.1, 0.1),
                border_mode=cv2.BORDER_CONSTANT,
                fill=114,
                p=0.7,
            ),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.5, hue=0.02, p=0.8),
        ]
    steps.append(A.Resize(height, width, interpolation=cv2.INTER_LINEAR))
    boxes = A.BboxParams(
        format="albumentations",
        label_fields=["classes"],
        min_visibility=0.3,
        clip=True,
        filter_invalid_bboxes=True,
    )
    return A.Compose(steps, bbox_params=boxes)


class DetectionBatches(keras.utils.PyDataset):
    """Batches of (images in 0..1, (targets per head..., every object's box)) for ``fit``."""

    def __init__(
        self,
        samples: Sequence[Sample],
        class_map: Sequence[int | None],
        task: YoloTask,
        batch: int,
        augment: bool,
        seed: int = 0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.samples = list(samples)
        self.class_map = [-1 if c is None else c for c in class_map]
        self.grids, self.anchors = task.grids, task.anchors
        self.input_size, self.num_classes = task.input_size, task.num_classes
        self.batch = batch
        self.transform = augmentation(*task.input_size, augment)
        self.rng = np.random.default_rng(seed)
        self.order = (
            self.rng.permutation(len(self.samples)) if augment else np.arange(len(self.samples))
        )
        self.shuffle = augment

    def __len__(self) -> int:
        return math.ceil(len(self.samples) / self.batch)

    def example(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One augmented, resized image (uint8) with its boxes and model classes (-1 ignored)."""
        sample = self.samples[index]
        classes = np.array([self.class_map[c] for c in sample.classes], dtype=np.int64)
        classes[sample.ignore] = -1
        boxes = sample.boxes
        keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        out = self.transform(
            image=read_image(sample.image), bboxes=boxes[keep], classes=classes[keep]
        )
        return (
            out["image"],
            np.asarray(out["bboxes"], np.float64).reshape(-1, 4),
            np.asarray(out["classes"], np.int64),
        )

    def __getitem__(self, index: int):
        chosen = self.order[index * self.batch : (index + 1) * self.batch]
        images, heads, every = [], [[] for _ in self.grids], []
        for sample_index in chosen:
            image, boxes, classes = self.example(sample_index)
            targets, objects = encode_targets(
                boxes, classes, self.grids, self.anchors, self.input_size, self.num_classes
            )
            images.append(image)
            for slot, target in zip(heads, targets, strict=True):
                slot.append(target)
            every.append(objects)
        batch_images = np.stack(images).astype(np.float32) / 255.0
        return batch_images, (*[np.stack(h) for h in heads], np.stack(every))

    def on_epoch_end(self) -> None:
        if self.shuffle:
            self.order = self.rng.permutation(len(self.samples))


def pseudo_label(task: YoloTask, folder: Path | str) -> list[Sample]:
    """Samples from unlabelled images, labelled by the starting model's detections.

    Mixed into training they keep the pretrained behaviour on the kind of footage the labelled
    set lacks (road scenes), a guard against forgetting.
    """
    from apps.car_detection.detector import YoloDetector
    from shared.images import list_images

    images = list_images(folder)
    if not images:
        raise InputError(f"{folder}: no images to pseudo-label")
    detector = YoloDetector(task.detection_network(), task.names, conf=PSEUDO_LABEL_UNSURE)
    samples = []
    for start in range(0, len(images), 8):
        paths = images[start : start + 8]
        frames = [read_image(path) for path in paths]
        for path, frame, found in zip(paths, frames, detector.detect(frames), strict=True):
            samples.append(pseudo_sample(path, frame.shape, found))
    return samples


def pseudo_sample(path: Path, shape: tuple[int, ...], found: list[Detection]) -> Sample:
    """One pseudo-labelled image: detections at ``PSEUDO_LABEL_CONF`` or above are objects; weaker
    ones are ignored, neither object nor background.

    Taught as background, the weak ones (mostly small, distant cars) lose their scores in the
    fine-tuned model, which is the forgetting this guard is there to prevent.
    """
    height, width = shape[:2]
    boxes = np.array([d.box for d in found], dtype=np.float64).reshape(-1, 4)
    classes = np.array([d.class_id for d in found], dtype=np.int64)
    unsure = np.array([d.score < PSEUDO_LABEL_CONF for d in found], dtype=bool)
    return Sample(path, boxes / [width, height, width, height], classes, unsure)


# --- schedule and callbacks -----------------------------------------------------------------


@keras.saving.register_keras_serializable(package="convnet_apps.yolo")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ~0 to ``peak`` over ``warmup`` steps, then cosine down to ``floor``."""

    def __init__(self, peak: float, warmup: int, total: int, floor: float = 0.05):
        self.peak, self.warmup, self.total, self.floor = (
            float(peak),
            int(warmup),
            int(total),
            float(floor),
        )

    def __call__(self, step):
        from keras import ops

        step = ops.cast(step, "float32")
        warm = self.peak * (step + 1.0) / max(self.warmup, 1)
        progress = ops.clip((step - self.warmup) / max(self.total - self.warmup, 1), 0.0, 1.0)
        cosine = self.peak * (
            self.floor + (1 - self.floor) * 0.5 * (1 + ops.cos(math.pi * progress))
        )
        return ops.where(step < self.warmup, warm, cosine)

    def get_config(self):
        return {"peak": self.peak, "warmup": self.warmup, "total": self.total, "floor": self.floor}


class EpochEnd(keras.callbacks.Callback):
    """Validation mAP, TensorBoard, checkpoints, the state file and early stopping."""

    def __init__(
        self,
        task: YoloTask,
        valid: Dataset,
        class_map,
        out: Path,
        state: TrainState,
        settings: TrainSettings,
        writer,
        on_epoch: Callable[[dict], None] | None = None,
    ):
        super().__init__()
        from apps.car_detection.detector import YoloDetector
        from apps.car_detection.evaluate import SCORE_FLOOR

        self.task, self.valid, self.class_map = task, valid, class_map
        self.out, self.state, self.settings, self.writer = out, state, settings, writer
        self.detector = YoloDetector(
            task.detection_network(), task.names, conf=SCORE_FLOOR, multi_label=True
        )
        self.on_epoch = on_epoch
        self.started = time.monotonic()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        from apps.car_detection.evaluate import evaluate

        logs = dict(logs or {})
        result = evaluate(self.detector, self.valid, self.class_map)
        learning_rate = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))
        record = {
            "epoch": epoch + 1,
            "loss": logs.get("loss"),
            "box_loss": logs.get("box_loss"),
            "obj_loss": logs.get("obj_loss"),
            "cls_loss": logs.get("cls_loss"),
            "lr": learning_rate,
            "valid_map50": result.map50,
            "valid_ap50": {r.name: r.ap50 for r in result.classes if r.ground_truth},
        }
        if self.writer is not None:
            log_epoch(
                self.writer,
                epoch + 1,
                record,
                result,
                self.detector,
                self.valid,
                self.class_map,
                self.settings.sample_images,
            )
        self.state.epoch = epoch + 1
        self.state.history.append(record)
        self.task.save(self.out / CHECKPOINT_LAST)
        if result.map50 > self.state.best_map50:
            self.state.best_map50, self.state.best_epoch = result.map50, epoch + 1
            self.task.save(self.out / CHECKPOINT_BEST)
        save_state(self.out, self.state, self.settings)
        if epoch + 1 - self.state.best_epoch >= self.settings.patience:
            self.model.stop_training = True
        limit = self.settings.max_minutes
        if limit is not None and time.monotonic() - self.started > 60 * limit:
            self.model.stop_training = True
        if self.on_epoch is not None:
            self.on_epoch(record)


def log_epoch(
    writer, step: int, record: dict, result, detector, valid: Dataset, class_map, samples: int
) -> None:
    """TensorBoard: losses by part, learning rate, validation mAP and AP per class, P-R curves and
    validation images with predicted (class score) and true (``true class``) boxes."""
    from shared import tensorboard

    values = {
        f"loss/{part}": record[f"{part}_loss"]
        for part in ("box", "obj", "cls")
        if record[f"{part}_loss"] is not None
    }
    if record["loss"] is not None:
        values["loss/total"] = record["loss"]
    values["learning_rate"] = record["lr"]
    values["valid/mAP50"] = result.map50
    values["valid/mAP50_95"] = result.map
    values.update({f"valid_AP50/{r.name}": r.ap50 for r in result.classes if r.ground_truth})
    tensorboard.scalars(writer, step, values)
    for r in result.classes:
        if not r.ground_truth:
            continue
        missed = max(r.ground_truth - int(r.matched.sum()), 0)
        labels = np.concatenate([r.matched, np.ones(missed, bool)])
        scores = np.concatenate([np.clip(r.scores, 0, 1), np.zeros(missed)])
        tensorboard.pr_curve(writer, f"pr/{r.name}", step, labels, scores)
    shown = valid.samples[:samples]
    frames = [read_image(sample.image) for sample in shown]
    for number, (sample, frame, found) in enumerate(
        zip(shown, frames, detector.detect(frames), strict=True)
    ):
        height, width = frame.shape[:2]
        predicted = [d for d in found if d.score >= 0.25]
        truth = [c for c in sample.classes]
        true_boxes = sample.pixel_boxes(width, height)
        boxes = [d.box for d in predicted] + [tuple(b) for b in true_boxes]
        labels = [f"{d.label} {d.score:.2f}" for d in predicted] + [
            "true " + ("ignored" if class_map[c] is None else detector.names[class_map[c]])
            for c in truth
        ]
        tensorboard.image_with_boxes(
            writer, f"valid_images/{number}", step, frame, np.array(boxes).reshape(-1, 4), labels
        )


def save_state(out: Path, state: TrainState, settings: TrainSettings) -> None:
    with atomic_output(out / STATE_FILE) as temp:
        temp.write_text(
            json.dumps({"state": asdict(state), "settings": asdict(settings)}, indent=2)
        )


def load_state(out: Path) -> TrainState:
    path = out / STATE_FILE
    if not path.is_file() or not (out / CHECKPOINT_LAST).is_file():
        raise InputError(
            f"{out}: nothing to resume ({STATE_FILE} and {CHECKPOINT_LAST} are needed)"
        )
    try:
        return TrainState(**json.loads(path.read_text())["state"])
    except (ValueError, KeyError, TypeError):
        raise InputError(f"{path}: not a training state file") from None


# --- the run --------------------------------------------------------------------------------


def set_trainable(task: YoloTask, backbone_too: bool) -> None:
    """Heads always learn; the rest only in phase 2; batch normalisation never (inference mode)."""
    heads = {layer.name for layer in _head_convolutions(task.backbone)}
    for layer in task.backbone.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        else:
            layer.trainable = backbone_too or layer.name in heads


def fit_phases(
    task: YoloTask,
    train_batches: DetectionBatches,
    callbacks: list,
    settings: TrainSettings,
    state: TrainState,
    strategy,
) -> None:
    """Phase 1 (frozen backbone) and phase 2 (everything), each with warm-up + cosine."""
    steps = len(train_batches)
    phases = [
        (0, min(settings.freeze_epochs, settings.epochs), False, settings.lr),
        (
            min(settings.freeze_epochs, settings.epochs),
            settings.epochs,
            True,
            settings.lr * settings.backbone_lr,
        ),
    ]
    for first, last, backbone_too, peak in phases:
        if state.epoch >= last or first >= last:
            continue
        start = max(first, state.epoch)
        with strategy.scope():
            set_trainable(task, backbone_too)
            schedule = WarmupCosine(
                peak, int(settings.warmup_epochs * steps), (last - start) * steps
            )
            task.compile(
                optimizer=keras.optimizers.Adam(schedule, clipnorm=10.0), jit_compile=False
            )
        with fit_scope(task, strategy):
            task.fit(
                train_batches, epochs=last, initial_epoch=start, callbacks=callbacks, verbose=0
            )
        if task.stop_training:
            return


def train(
    train_set: Dataset,
    valid_set: Dataset,
    out: Path | str,
    settings: TrainSettings,
    *,
    class_map: dict[str, str] | None = None,
    model: str | None = None,
    cfg=None,
    weights=None,
    names=None,
    size: int | None = None,
    from_scratch: bool = False,
    resume: bool = False,
    pseudo_labels: Path | str | None = None,
    logdir: Path | str | None = None,
    strategy: str = "default",
    on_epoch: Callable[[dict], None] | None = None,
) -> TrainState:
    """Train and return the final state; ``out`` receives best.keras, last.keras, state.json."""
    import tensorflow as tf

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(settings.seed)
    overrides = class_map or {}
    state = load_state(out) if resume else TrainState()
    if resume:  # the checkpoint has its anchors and classes already
        settings = TrainSettings(**{**asdict(settings), "anchors": "keep"})
    boxes = np.concatenate([s.boxes for s in train_set.samples] or [np.zeros((0, 4))])
    sizes = boxes[:, 2:] - boxes[:, :2]
    distribution = distribution_strategy(strategy)
    state.replicas = distribution.num_replicas_in_sync
    with distribution.scope():
        task, mapping = start_task(
            train_set.names,
            overrides,
            sizes,
            settings,
            model=str(out / CHECKPOINT_LAST) if resume else model,
            cfg=None if resume else cfg,
            weights=None if resume else weights,
            names_file=names,
            size=size,
            from_scratch=from_scratch and not resume,
        )
    if train_set.names != valid_set.names:
        raise InputError(
            f"{valid_set.root}: classes {valid_set.names} differ from the training "
            f"set's {train_set.names}"
        )
    samples = list(train_set.samples)
    pseudo_map = list(mapping)
    if pseudo_labels is not None:
        extra = pseudo_label(task, pseudo_labels)
        # Pseudo-labels are already model classes: give them an identity map past the dataset's.
        offset = len(train_set.names)
        samples += [Sample(s.image, s.boxes, s.classes + offset, s.ignore) for s in extra]
        pseudo_map += list(range(task.num_classes))
    batches = DetectionBatches(
        samples,
        pseudo_map,
        task,
        settings.batch,
        settings.augment,
        # Each worker of a multi-worker run draws its own batches.
        worker_seed(settings.seed, distribution),
    )
    writer = tf.summary.create_file_writer(str(logdir)) if logdir else None
    callbacks = [EpochEnd(task, valid_set, mapping, out, state, settings, writer, on_epoch)]
    try:
        fit_phases(task, batches, callbacks, settings, state, distribution)
    except KeyboardInterrupt:
        task.save(out / CHECKPOINT_LAST)
        save_state(out, state, settings)
        raise
    finally:
        if writer is not None:
            writer.flush()
    return state


# --- export ---------------------------------------------------------------------------------


def export(model_path: Path | str, format: str) -> Path:
    """Write a trained ``.keras`` model's detection network as a SavedModel folder or a
    ``.tflite`` file beside it. Either takes (B, height, width, 3) float32 RGB in 0..1 (resized
    without letterbox) and returns one (B, rows, 5 + classes) array of decoded rows per head,
    as ``DarknetModel`` does; ``decode.select_detections`` turns them into boxes.
    """
    import tempfile

    import tensorflow as tf

    model_path = Path(model_path)
    network = load_task(model_path).detection_network()
    if format == "savedmodel":
        target = model_path.with_suffix("")
        target = target.with_name(f"{target.name}_savedmodel")
        network.model.export(str(target), format="tf_saved_model", verbose=False)
        return target
    if format != "tflite":
        raise InputError(f"--export must be savedmodel or tflite, not {format!r}")
    target = model_path.with_suffix(".tflite")
    with tempfile.TemporaryDirectory() as folder:
        network.model.export(folder, format="tf_saved_model", verbose=False)
        flatbuffer = tf.lite.TFLiteConverter.from_saved_model(folder).convert()
    with atomic_output(target) as temp:
        temp.write_bytes(flatbuffer)
    return target
