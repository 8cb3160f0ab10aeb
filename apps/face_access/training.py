"""Triplet-loss training of a face embedder: P x K batches, augmentation, monitoring, resume.

``train`` is what ``face-train`` runs; everything is ``FaceEmbeddingTask.fit``:

- Data: aligned chips (``facesets.align_photos``, cached), one label per person. Each batch
  holds P people x K photos (``pk_batches``; a person with fewer than K photos repeats some),
  ordered by person, so that when ``tf.distribute`` splits a batch between replicas each
  part still holds whole people (P must be a multiple of the replica count).
- Augmentation after alignment (``face_augmentation``, albumentations): mirror image,
  brightness/contrast, small rotation/scale/shift, blur, JPEG quality.
- Each epoch (``VerificationMonitor``): the validation people's chips are embedded and
  TAR at FAR (1e-3 by default) and ROC AUC over all their pairs are added to the logs
  (``val_tar_at_far``, ``val_auc``, with the learning rate), where TensorBoard, early stopping
  and the best-model file see them. The best epoch is written to the output ``.keras`` with
  the distance of that FAR as the model's threshold, but never looser than the threshold of
  the catalogued model it was fine-tuned from (``threshold_cap``); at the end the validation
  embeddings go to TensorBoard's projector with face thumbnails.
- ``EpochCheckpoint`` saves the whole task (weights and optimizer state) and the epoch reached
  after every epoch; Ctrl-C saves the same checkpoint before leaving, and ``resume`` carries on
  from it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import keras
import numpy as np

from shared.errors import InputError

CHECKPOINT_FILE = "last.keras"
STATE_FILE = "state.json"
THUMBNAIL_SIZE = 48


def face_augmentation(seed: int | None = None):
    """Augmentation of aligned face chips: what a door camera varies, not what changes a face.

    Mirror image (half the time), brightness and contrast +/-20 %, rotation within 8 degrees,
    scale within 7 %, shift within 3 % (the alignment's own jitter), a light Gaussian or motion
    blur (one chip in five), JPEG quality 40 to 95 (one in three). No colour shifts beyond
    brightness, no crops that cut the face: the chip's layout is what the embedder relies on.
    """
    import albumentations as A
    import cv2

    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
            A.Affine(
                scale=(0.93, 1.07),
                rotate=(-8, 8),
                translate_percent=(-0.03, 0.03),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=0.7,
            ),
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 5))], p=0.2),
            A.ImageCompression(quality_range=(40, 95), p=0.3),
        ],
        seed=seed,
    )


def pk_batches(
    labels: np.ndarray, people: int, photos: int, rng: np.random.Generator
) -> Iterator[np.ndarray]:
    """Endless row indices of P x K batches: ``people`` labels drawn without replacement,
    ``photos`` rows of each (without replacement when the person has that many)."""
    labels = np.asarray(labels)
    rows_of = {label: np.flatnonzero(labels == label) for label in np.unique(labels)}
    usable = [label for label, rows in rows_of.items() if len(rows) >= 2]
    if len(usable) < people:
        raise InputError(
            f"{len(usable)} people with two or more usable photos; a batch needs {people}"
            " (lower --people)"
        )
    while True:
        batch = []
        for label in rng.choice(usable, people, replace=False):
            rows = rows_of[label]
            batch.append(rng.choice(rows, photos, replace=len(rows) < photos))
        yield np.concatenate(batch)


def batch_dataset(chips, labels, people, photos, *, augment: bool, seed: int):
    """A ``tf.data.Dataset`` of endless (chips float32, labels int32) P x K batches."""
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    augmenter = face_augmentation(seed) if augment else None
    size = people * photos

    def generate():
        for rows in pk_batches(labels, people, photos, rng):
            batch = chips[rows]
            if augmenter is not None:
                batch = np.stack([augmenter(image=chip)["image"] for chip in batch])
            yield batch.astype(np.float32), labels[rows].astype(np.int32)

    shape = chips.shape[1:]
    dataset = tf.data.Dataset.from_generator(
        generate,
        output_signature=(
            tf.TensorSpec((size, *shape), tf.float32),
            tf.TensorSpec((size,), tf.int32),
        ),
    )
    options = tf.data.Options()
    # Each worker draws its own batches (seeded by its task index): no file to shard.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options).prefetch(2)


def thumbnails(chips: np.ndarray, size: int = THUMBNAIL_SIZE) -> np.ndarray:
    import cv2

    return np.stack(
        [cv2.resize(chip, (size, size), interpolation=cv2.INTER_AREA) for chip in chips]
    )


# The validation figures an epoch can be chosen by (``train(select_by=...)``). TAR at a low FAR
# is what the door needs, but from scratch it sits near zero for many epochs, where a handful
# of impostor pairs decide it (CelebA val: TAR@1e-3 jumped 0.000, 0.014, 0.004, 0.004 as AUC
# rose 0.69 -> 0.77); AUC, which every pair moves, is then the steadier guide.
SELECTION_FIGURES = ("tar_at_far", "auc")


class VerificationMonitor(keras.callbacks.Callback):
    """Validation TAR@FAR and AUC each epoch (into the logs), the best model (by
    ``select_by``, one of ``SELECTION_FIGURES``) to ``output``."""

    def __init__(
        self,
        chips,
        labels,
        names,
        *,
        far: float,
        output: Path | None,
        logdir=None,
        select_by: str = "tar_at_far",
        threshold_cap: float | None = None,
    ):
        super().__init__()
        if select_by not in SELECTION_FIGURES:
            raise ValueError(f"select_by must be one of {SELECTION_FIGURES}, not {select_by!r}")
        self.chips, self.labels, self.names = chips, np.asarray(labels), names
        self.far, self.output, self.logdir = far, output, logdir
        self.select_by = select_by
        self.threshold_cap = threshold_cap
        self.best = -math.inf
        self.best_epoch = None
        self.best_threshold = None
        self.history: list[dict] = []

    def measure(self) -> dict:
        from apps.face_access.verification import verification_pairs
        from shared.metrics import roc_auc, tar_at_far

        vectors = self.model.predict(self.chips.astype(np.float32), batch_size=64, verbose=0)
        pairs = verification_pairs(vectors, self.labels)
        genuine, impostor = pairs.genuine_distances, pairs.impostor_distances
        scores = np.concatenate([genuine, impostor])
        truth = np.concatenate([np.ones(genuine.size, bool), np.zeros(impostor.size, bool)])
        at_far = tar_at_far(genuine, impostor, self.far)
        return {
            "tar_at_far": at_far.tar,
            "auc": roc_auc(truth, -scores),
            "threshold": at_far.threshold,
        }

    def on_train_begin(self, logs=None):
        self.initial = self.measure()

    def on_epoch_end(self, epoch, logs=None):
        figures = self.measure()
        if logs is not None:
            logs["val_tar_at_far"] = figures["tar_at_far"]
            logs["val_auc"] = figures["auc"]
            logs["learning_rate"] = float(
                keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
            )
        self.history.append({"epoch": epoch + 1, **figures})
        if figures[self.select_by] > self.best:
            self.best, self.best_epoch = figures[self.select_by], epoch + 1
            # The door's default for this model: the distance of the validation FAR. A few
            # validation people measure a FAR of 1e-3 at best, and a door compares a stranger
            # with every enrolled photo (180 of them: a 16 % chance of a grant at 1e-3); the
            # model it started from had its threshold chosen on millions of pairs, so a
            # fine-tuned model never gets a looser one. Measured: SFace fine-tuned one epoch
            # at 1e-5 had 1.126 here, which let 9 of LFW dev's 150 strangers in; at SFace's
            # 0.95, none (TAR 0.977, SFace itself 0.974).
            threshold = figures["threshold"]
            if self.threshold_cap is not None:
                threshold = min(threshold, self.threshold_cap)
            self.model.threshold = self.best_threshold = threshold
            if self.output is not None:
                _save(self.model, self.output)

    def on_train_end(self, logs=None):
        if self.logdir is None:
            return
        from shared.tensorboard import embedding_projector

        vectors = self.model.predict(self.chips.astype(np.float32), batch_size=64, verbose=0)
        labels = [self.names[label] for label in self.labels]
        embedding_projector(
            Path(self.logdir) / "projector", vectors, labels, thumbnails(self.chips)
        )


def _save(model, path: Path) -> None:
    from shared.files import atomic_output

    with atomic_output(path) as temp:
        model.save(temp)


class EpochCheckpoint(keras.callbacks.Callback):
    """The whole task (with its optimizer state) and the epochs done, after every epoch; with
    ``monitor``, also its best validation figure so far, which a resumed run must beat before
    it replaces the output file."""

    def __init__(self, folder: Path, monitor: VerificationMonitor | None = None):
        super().__init__()
        self.folder = folder
        self.monitor = monitor
        self.epochs_done = 0

    def save(self, epochs_done: int) -> None:
        from shared.files import atomic_output

        self.folder.mkdir(parents=True, exist_ok=True)
        _save(self.model, self.folder / CHECKPOINT_FILE)
        state: dict = {"epochs_done": epochs_done}
        if self.monitor is not None and self.monitor.best_epoch is not None:
            state["best"] = {
                "by": self.monitor.select_by,
                "value": self.monitor.best,
                "epoch": self.monitor.best_epoch,
                "threshold": self.monitor.best_threshold,
            }
        with atomic_output(self.folder / STATE_FILE) as temp:
            temp.write_text(json.dumps(state))

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs_done = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.epochs_done = epoch + 1
        self.save(self.epochs_done)


def _checkpoint_files(folder: Path) -> tuple[Path, Path]:
    """The state and task files of a checkpoint folder, or InputError if it holds none."""
    state_path, model_path = folder / STATE_FILE, folder / CHECKPOINT_FILE
    if not (state_path.is_file() and model_path.is_file()):
        raise InputError(
            f"{folder}: no checkpoint to resume from ({CHECKPOINT_FILE}, {STATE_FILE})"
        )
    return state_path, model_path


def resumed_chip(folder: Path) -> str:
    """Whose chips the checkpointed task learns on (``models.SPECS`` name), so that a resumed
    run cuts the same ones whatever ``--backbone`` says."""
    from apps.face_access.models import trained_settings

    return trained_settings(_checkpoint_files(folder)[1])["chip"]


def resume_point(folder: Path) -> tuple[keras.Model, dict]:
    """The checkpointed task (compiled, optimizer state restored) and its state: the epochs it
    had done (``epochs_done``) and, if any, the best validation figure and its epoch."""
    state_path, model_path = _checkpoint_files(folder)
    from apps.face_access.face_model import register_backbone_layers

    register_backbone_layers()
    return keras.models.load_model(model_path), json.loads(state_path.read_text())


@dataclass
class TrainReport:
    output: str
    model_id: str
    backbone: str
    mining: str
    margin: float
    train_people: int
    train_photos: int
    validation_people: int
    validation_photos: int
    epochs_run: int
    best_epoch: int | None
    threshold: float | None  # the one written into the output file
    select_by: str
    initial_validation: dict
    validation: list[dict] = field(default_factory=list)
    history: dict = field(default_factory=dict)
    seconds: float = 0.0
    replicas: int = 1
    interrupted: bool = False

    @property
    def improved(self) -> bool:
        """Whether the best epoch beat the starting model on the validation figure."""
        best = max((row[self.select_by] for row in self.validation), default=-math.inf)
        return best > self.initial_validation.get(self.select_by, -math.inf)

    def to_dict(self) -> dict:
        return {**asdict(self), "improved": self.improved}


def _labels_of(people: list[str]) -> tuple[np.ndarray, list[str]]:
    names = sorted(set(people))
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[p] for p in people], np.int64), names


DEFAULT_LEARNING_RATE = 1e-4


def train(
    train_chips,
    val_chips,
    *,
    output: Path,
    checkpoints: Path,
    backbone: str = "dlib",
    freeze_until: str | None = None,
    mining: str = "semi_hard",
    margin: float = 0.2,
    people: int = 8,
    photos: int = 4,
    epochs: int = 10,
    steps_per_epoch: int | None = None,
    learning_rate: float | None = None,
    patience: int = 3,
    far: float = 1e-3,
    select_by: str | None = None,
    logdir: Path | None = None,
    resume: bool = False,
    strategy="default",
    augment: bool = True,
    seed: int = 0,
    weights="pretrained",
    task_factory=None,
    extra_callbacks=(),
    verbose: int = 0,
) -> TrainReport:
    """Fit a ``FaceEmbeddingTask`` on ``train_chips`` (``facesets.Chips``), validate on
    ``val_chips``; the best epoch by validation ``select_by`` (TAR@``far`` or AUC) is saved to
    ``output``, and training stops after ``patience`` epochs without a better one.

    ``select_by``: None is TAR@``far``, or on ``resume`` the checkpoint's figure.
    ``learning_rate``: Adam's (None: ``DEFAULT_LEARNING_RATE``, or on ``resume`` the
    checkpoint's own).
    ``task_factory``: a function returning a ``FaceEmbeddingTask`` around another backbone
    (called inside the distribution scope, then compiled here) instead of
    ``build_task(backbone, ...)``.
    ``strategy``: a ``shared.distribute`` name or a strategy made already (multi-worker: at
    the program's start). ``extra_callbacks``: more Keras callbacks. ``verbose``: Keras's
    progress output.
    """
    from apps.face_access.face_model import build_task
    from apps.face_access.models import SPECS
    from shared.distribute import distribution_strategy, fit_scope, worker_seed
    from shared.tensorboard import tensorboard_callback

    started = time.monotonic()
    labels, names = _labels_of(train_chips.people)
    val_labels, val_names = _labels_of(val_chips.people)
    if len(val_names) < 2:
        raise InputError("validation needs at least two people with usable photos")
    distribution = distribution_strategy(strategy) if isinstance(strategy, str) else strategy
    replicas = distribution.num_replicas_in_sync
    if people % replicas or people < 2 * replicas:
        # Each replica mines triplets within its own share of the batch: whole people, and
        # at least two of them, or it has no negatives.
        raise InputError(
            f"--people {people} must be a multiple of the {replicas} replicas, with at least "
            "two people per replica"
        )
    dataset = batch_dataset(
        train_chips.chips,
        labels,
        people,
        photos,
        augment=augment,
        seed=worker_seed(seed, distribution),
    )
    steps = steps_per_epoch or max(1, len(labels) // (people * photos))
    state: dict = {}
    with distribution.scope():
        if resume:
            task, state = resume_point(checkpoints)
            initial_epoch = int(state["epochs_done"])
            if learning_rate is not None:  # e.g. a smaller one for the rest of a long run
                task.optimizer.learning_rate.assign(learning_rate)
        else:
            keras.utils.set_random_seed(seed)
            if task_factory is not None:
                task = task_factory()
            else:
                task = build_task(
                    backbone,
                    freeze_until=freeze_until,
                    mining=mining,
                    margin=margin,
                    weights=weights,
                )
            task.compile(optimizer=keras.optimizers.Adam(learning_rate or DEFAULT_LEARNING_RATE))
            initial_epoch = 0
    threshold_cap = SPECS[task.base].threshold if task.base else None
    best = state.get("best", {})
    select_by = select_by or best.get("by", "tar_at_far")  # resumed: the checkpoint's
    monitor = VerificationMonitor(
        val_chips.chips,
        val_labels,
        val_names,
        far=far,
        output=output,
        logdir=logdir,
        select_by=select_by,
        threshold_cap=threshold_cap,
    )
    if best.get("by") == select_by:  # resumed: the output holds that epoch; only a better one
        monitor.best, monitor.best_epoch = best["value"], best["epoch"]  # replaces it
        monitor.best_threshold = best["threshold"]
    checkpoint = EpochCheckpoint(checkpoints, monitor)
    callbacks = [
        monitor,  # first: it adds the validation figures to the logs the others read
        checkpoint,
        keras.callbacks.EarlyStopping(monitor=f"val_{select_by}", mode="max", patience=patience),
    ]
    if logdir is not None:
        callbacks.append(tensorboard_callback(logdir))
    callbacks += list(extra_callbacks)
    interrupted = False
    history = {}
    try:
        with fit_scope(task, distribution):
            fitted = task.fit(
                dataset,
                epochs=epochs,
                initial_epoch=initial_epoch,
                steps_per_epoch=steps,
                callbacks=callbacks,
                verbose=verbose,
            )
        history = {k: [float(v) for v in values] for k, values in fitted.history.items()}
    except KeyboardInterrupt:
        interrupted = True
        checkpoint.save(checkpoint.epochs_done)
    return TrainReport(
        output=str(output),
        model_id=task.model_id,
        backbone=task.backbone.name,
        mining=task.mining,
        margin=task.margin,
        train_people=len(names),
        train_photos=len(labels),
        validation_people=len(val_names),
        validation_photos=len(val_labels),
        epochs_run=checkpoint.epochs_done - initial_epoch,
        best_epoch=monitor.best_epoch,
        threshold=monitor.best_threshold,
        select_by=select_by,
        initial_validation=getattr(monitor, "initial", {}),
        validation=monitor.history,
        history=history,
        seconds=time.monotonic() - started,
        replicas=replicas,
        interrupted=interrupted,
    )
