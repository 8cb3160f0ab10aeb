"""``stylize-train``: train a feed-forward network for one style (Johnson et al. 2016).

The transformer (``fast.StyleNetwork``) paints a batch of photo crops; the loss network is the
one ``stylize`` optimises against (``features``: SqueezeNet here, VGG-19 where its weights are
at hand), with the same layers and the same relative costs and weights (``losses``,
``optimize.LossWeights``): content against the photo itself, Gram-matrix style against the
style image, total variation. Only the transformer's weights learn (Adam, cosine-decayed
learning rate), so one forward pass later replaces minutes of optimisation.

Photos come from any folders (recursively): each step reads ``batch_size`` of them in a
background thread and cuts a random square of ``image_size`` px with albumentations (a random
part of the photo, resized, so the scale varies too) and flips half of them.

Everything a run needs to go on is in one checkpoint file (the transformer's and the
optimiser's weights, the step and the settings), written every ``checkpoint_every`` steps
and when the run is interrupted; ``resume=True`` continues from it. TensorBoard gets the loss
parts and learning rate, and a fixed set of validation photos stylised every ``val_every``
steps.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from apps.style_transfer.optimize import MIN_SIDE, resize_style, to_uint8
from apps.style_transfer.settings import LossWeights, TrainSettings
from shared.errors import InputError
from shared.files import atomic_output, refuse_to_replace, require_parent_folder
from shared.images import list_images, read_image

LOSS_NAMES = ("total", "content", "style", "tv")
CHECKPOINT_FORMAT = 1


def check_train_settings(settings: TrainSettings) -> None:
    """One clear error for a setting no run could use, before any work starts."""
    from shared.backbones.image_transformer import WIDTHS

    if settings.width not in WIDTHS:
        raise InputError(f"--width must be one of {', '.join(WIDTHS)}, not {settings.width!r}")
    for flag, value, least in (
        ("--image-size", settings.image_size, MIN_SIDE),
        ("--style-size", settings.style_size, MIN_SIDE),
        ("--batch-size", settings.batch_size, 1),
        ("--steps", settings.steps, 1),
        ("--val-every", settings.val_every, 1),
        ("--checkpoint-every", settings.checkpoint_every, 1),
    ):
        if value < least:
            raise InputError(f"{flag} must be at least {least}, not {value}")
    if settings.learning_rate <= 0:
        raise InputError(f"--learning-rate must be positive, not {settings.learning_rate}")
    weights = settings.weights
    if min(weights.content, weights.style, weights.tv) < 0:
        raise InputError("--content-weight, --style-weight and --tv-weight must not be negative")


def image_files(sources: Sequence[str | Path]) -> list[Path]:
    """Every image in the given folders (recursively) and files, in a stable order."""
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = list_images(source, recursive=True)
            if not found:
                raise InputError(f"{source}: folder holds no images")
            files.extend(found)
        elif source.is_file():
            files.append(source)
        else:
            raise InputError(f"{source}: no such file or folder (--images)")
    if not files:
        raise InputError("--images: no training images given")
    return sorted(set(files))


def crop_transform(size: int):
    """albumentations: a random part of the photo (15-100 % of its area) resized to a square,
    flipped left-right half the time."""
    import albumentations as A

    return A.Compose(
        [
            A.RandomResizedCrop(size=(size, size), scale=(0.15, 1.0), ratio=(0.75, 4 / 3)),
            A.HorizontalFlip(p=0.5),
        ]
    )


class TrainingBatches:
    """Endless batches of augmented crops (uint8, (B, S, S, 3)), read ahead in a thread.

    Unreadable files are skipped (counted in ``skipped``) rather than ending a long run; the
    order is a seeded shuffle, reseeded from the step on resume so a resumed run sees new
    crops.
    """

    def __init__(self, files: Sequence[Path], size: int, batch_size: int, seed: int) -> None:
        self.files = list(files)
        self.size = size
        self.batch_size = batch_size
        self.skipped = 0
        self._transform = crop_transform(size)
        self._rng = np.random.default_rng(seed)
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="train-images", daemon=True)
        self._thread.start()

    def _crops(self) -> Iterator[np.ndarray]:
        while True:
            for index in self._rng.permutation(len(self.files)):
                try:
                    image = read_image(self.files[index])
                except InputError:
                    self.skipped += 1
                    continue
                if min(image.shape[:2]) < 8:
                    self.skipped += 1
                    continue
                yield self._transform(image=image)["image"]

    def _produce(self) -> None:
        crops = self._crops()
        try:
            while not self._stop.is_set():
                batch = np.stack([next(crops) for _ in range(self.batch_size)])
                while not self._stop.is_set():
                    try:
                        self._queue.put(batch, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as error:  # handed to the consumer
            self._queue.put(error)

    def __next__(self) -> np.ndarray:
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class FeedForwardLoss:
    """The relative content, style and TV costs of ``optimize.Objective``, for a batch.

    Content is each photo's own content-layer activation (the transformer must keep it); style
    is the style image's normalised Gram matrices, compared with every generated image's own
    (one Gram per image, averaged over the batch) with the course's equal layer weights; total
    variation is relative to the photos' own, as in ``Objective``.
    """

    def __init__(self, features, style_image: np.ndarray, weights: LossWeights) -> None:
        import tensorflow as tf

        from apps.style_transfer import losses

        self._tf = tf
        self._losses = losses
        self._features = features
        self._weights = weights
        style = tf.convert_to_tensor(np.asarray(style_image, np.float32)[np.newaxis])
        self._style_targets = [losses.normalized_gram(a) for a in features(style)[1:]]
        self._layer_weight = 1.0 / len(self._style_targets)

    def __call__(self, photos, generated):
        """(total, content, style, tv) as one tensor; both inputs (B, H, W, 3) in [0, 255]."""
        tf, losses = self._tf, self._losses
        count = photos.shape[0]
        activations = self._features(tf.concat([photos, generated], axis=0))
        content = losses.relative_content_cost(
            tf.stop_gradient(activations[0][:count]), activations[0][count:]
        )
        per_layer = [
            tf.add_n(
                [
                    losses.relative_style_cost(target, losses.normalized_gram(a[i : i + 1]))
                    for i in range(count, 2 * count)
                ]
            )
            / count
            for target, a in zip(self._style_targets, activations[1:], strict=True)
        ]
        style = self._layer_weight * tf.add_n(per_layer)
        tv_reference = tf.maximum(losses.total_variation(photos), 1.0)
        tv = losses.total_variation(generated) / tv_reference
        weights = self._weights
        total = weights.content * content + weights.style * style + weights.tv * tv
        return tf.stack([total, content, style, tv])


@dataclass
class TrainResult:
    """What a run produced, as plain data (the command prints it, or its JSON)."""

    output: str | None  # None when interrupted before the end (the checkpoint holds the work)
    checkpoint: str
    style: str
    images: int
    model: str
    width: str
    steps: int  # the step the run stopped at
    first_step: int  # 0, or where a resumed run started
    seconds: float
    first: dict[str, float]  # loss parts averaged over the run's first logged steps
    last: dict[str, float]  # and over its last ones
    interrupted: bool = False
    skipped_images: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)


def check_model_output(output: Path, inputs: Sequence[Path]) -> Path:
    if output.suffix != ".keras":
        raise InputError(f"{output}: the model file name must end in .keras")
    require_parent_folder(output)
    if output.is_dir():
        raise InputError(f"{output}: is a folder; --output needs a file name")
    resolved = output.resolve()
    if any(path.resolve() == resolved for path in inputs):
        raise InputError(f"{output}: is an input; choose another --output")
    return output


def default_checkpoint(output: Path) -> Path:
    return output.with_name(f"{output.stem}.ckpt.npz")


def _save_checkpoint(path: Path, network, optimizer, settings: dict) -> None:
    arrays = {f"w{i}": np.asarray(v) for i, v in enumerate(network.get_weights())}
    arrays.update({f"o{i}": np.asarray(v) for i, v in enumerate(optimizer.variables)})
    arrays["settings"] = np.asarray(json.dumps(settings))
    arrays["format"] = np.asarray(CHECKPOINT_FORMAT)
    with atomic_output(path) as temp, open(temp, "wb") as stream:
        np.savez(stream, **arrays)


def _read_checkpoint(path: Path) -> tuple[dict, list[np.ndarray], list[np.ndarray]]:
    try:
        with np.load(path, allow_pickle=False) as data:
            if int(data["format"]) != CHECKPOINT_FORMAT:
                raise InputError(f"{path}: checkpoint format {int(data['format'])} is not known")
            settings = json.loads(str(data["settings"]))
            weights = [data[f"w{i}"] for i in range(sum(k.startswith("w") for k in data.files))]
            slots = [data[f"o{i}"] for i in range(sum(k.startswith("o") for k in data.files))]
    except (OSError, KeyError, ValueError) as error:
        raise InputError(f"{path}: not a stylize-train checkpoint ({error})") from None
    return settings, weights, slots


def _resume_settings(path: Path, settings: TrainSettings, saved: dict) -> None:
    """A checkpoint continues only the run that wrote it: same network, style and sizes."""
    for key in ("width", "image_size", "style_size", "batch_size"):
        if saved["train"][key] != getattr(settings, key):
            raise InputError(
                f"{path}: was trained with {key.replace('_', '-')} {saved['train'][key]}, "
                f"not {getattr(settings, key)}; use the same settings to resume"
            )


def _validation_images(files: Sequence[Path], size: int) -> list[tuple[str, np.ndarray]]:
    """Each validation photo at ``size`` px on its longest side (its shape kept)."""
    return [(path.stem, to_uint8(resize_style(read_image(path), size))) for path in files]


def train_style(
    style: str | Path,
    images: Sequence[str | Path],
    output: str | Path | None = None,
    settings: TrainSettings | None = None,
    *,
    model: str = "auto",
    content_layer: str | None = None,
    style_layers: Sequence[str] | None = None,
    logdir: str | Path | None = None,
    val_images: Sequence[str | Path] = (),
    checkpoint: str | Path | None = None,
    resume: bool = False,
    exist_ok: bool = False,
    notice: Callable[[str], None] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a ``StyleNetwork`` for ``style`` on the photos in ``images``; write ``output``.

    ``output`` defaults to ``<style stem>.keras`` in the current folder; the checkpoint to
    ``<output stem>.ckpt.npz`` beside it. An existing checkpoint is continued with
    ``resume=True`` and refused otherwise (so a run is never silently restarted or mixed);
    an existing ``output`` is replaced only with ``exist_ok``.
    ``on_step(step, parts)`` is called after every step. Ctrl-C saves the checkpoint and
    returns a result marked ``interrupted``.
    """
    import keras
    import tensorflow as tf

    from apps.style_transfer import features as feature_networks
    from apps.style_transfer.fast import StyleNetwork, thumbnail_jpeg
    from shared.tensorboard import scalars

    notice = notice or (lambda message: None)
    settings = settings or TrainSettings()
    check_train_settings(settings)
    style = Path(style)
    files = image_files(images)
    output = Path(output) if output else Path.cwd() / f"{style.stem}.keras"
    check_model_output(output, [style, *files])
    refuse_to_replace(output, exist_ok)
    checkpoint = Path(checkpoint) if checkpoint else default_checkpoint(output)
    if checkpoint.exists() and not resume:
        raise InputError(f"{checkpoint}: a checkpoint exists; --resume continues it, or remove it")
    if resume and not checkpoint.is_file():
        raise InputError(f"{checkpoint}: no checkpoint to resume")
    style_rgb = read_image(style)
    if min(style_rgb.shape[:2]) < MIN_SIDE:
        raise InputError(f"{style}: too small for a style image (at least {MIN_SIDE} px a side)")
    validation = _validation_images(
        [Path(p) for p in val_images] or files[:: max(1, len(files) // 3)][:3],
        settings.image_size,
    )
    saved = None
    if resume:
        saved = _read_checkpoint(checkpoint)
        _resume_settings(checkpoint, settings, saved[0])

    network_choice, network_weights = feature_networks.choose_network(model, notice)
    features, content_layer, style_layers = feature_networks.build_features(
        network_choice, network_weights, content_layer, style_layers
    )
    style_target = resize_style(style_rgb, settings.style_size)
    loss = FeedForwardLoss(features, style_target, settings.weights)
    run_settings = {
        "style": style.name,
        "network": network_choice.name,
        "content_layer": content_layer,
        "style_layers": list(style_layers),
        "images": len(files),
        "train": settings.as_dict(),
    }
    keras.utils.set_random_seed(settings.seed)  # the same network start for the same --seed
    network = StyleNetwork(
        settings.width,
        style_name=style.stem,
        style_thumbnail=thumbnail_jpeg(style_rgb),
        settings=run_settings,
    )
    network(np.zeros((1, MIN_SIDE, MIN_SIDE, 3), np.float32))  # build

    schedule = keras.optimizers.schedules.CosineDecay(
        settings.learning_rate, settings.steps, alpha=0.1
    )
    optimizer = keras.optimizers.Adam(schedule)
    optimizer.build(network.trainable_variables)
    if saved is not None:
        network.set_weights(saved[1])
        for variable, value in zip(optimizer.variables, saved[2], strict=True):
            variable.assign(value)
    first_step = int(optimizer.iterations.numpy())

    @tf.function
    def train_step(batch):
        photos = tf.cast(batch, tf.float32)
        with tf.GradientTape() as tape:
            parts = loss(photos, network(photos, training=True))
            total = parts[0]  # inside the tape: the slice must be recorded too
        gradients = tape.gradient(total, network.trainable_variables)
        optimizer.apply_gradients(zip(gradients, network.trainable_variables, strict=True))
        return parts

    writer = tf.summary.create_file_writer(str(logdir)) if logdir else None

    def log_validation(step: int) -> None:
        if writer is None:
            return
        with writer.as_default():
            for name, image in validation:
                painted = network(image[np.newaxis].astype(np.float32))
                painted = tf.cast(tf.clip_by_value(tf.round(painted), 0, 255), tf.uint8)
                tf.summary.image(f"validation/{name}", painted, step=step)
        writer.flush()

    if writer is not None and first_step == 0:
        with writer.as_default():
            tf.summary.image("style", style_target.astype(np.uint8)[np.newaxis], step=0)
            for name, image in validation:
                tf.summary.image(f"photo/{name}", image[np.newaxis], step=0)
        log_validation(0)

    batches = TrainingBatches(
        files, settings.image_size, settings.batch_size, settings.seed + first_step
    )
    history: list[dict[str, float]] = []
    step = first_step
    interrupted = False
    started = time.perf_counter()
    try:
        while step < settings.steps:
            values = train_step(next(batches)).numpy()
            parts = {name: float(value) for name, value in zip(LOSS_NAMES, values, strict=True)}
            step = int(optimizer.iterations.numpy())
            history.append({"step": step, **parts})
            if writer is not None:
                logged = {f"loss/{name}": value for name, value in parts.items()}
                logged["learning_rate"] = float(schedule(step - 1))  # the rate this step used
                scalars(writer, step, logged)
            if step % settings.val_every == 0 or step == settings.steps:
                log_validation(step)
            if step % settings.checkpoint_every == 0:
                _save_checkpoint(checkpoint, network, optimizer, run_settings)
            if on_step is not None:
                on_step(step, parts)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        batches.close()
        if writer is not None:
            writer.flush()
            writer.close()
    seconds = time.perf_counter() - started
    _save_checkpoint(checkpoint, network, optimizer, run_settings)
    if not interrupted:
        network.settings["train"]["steps_done"] = step
        with atomic_output(output) as temp:
            network.save(temp)
    window = max(1, min(20, len(history) // 4))
    return TrainResult(
        output=None if interrupted else str(output),
        checkpoint=str(checkpoint),
        style=str(style),
        images=len(files),
        model=network_choice.name,
        width=settings.width,
        steps=step,
        first_step=first_step,
        seconds=round(seconds, 3),
        first=_mean_parts(history[:window]),
        last=_mean_parts(history[-window:]),
        interrupted=interrupted,
        skipped_images=batches.skipped,
        history=history,
    )


def _mean_parts(entries: list[dict[str, float]]) -> dict[str, float]:
    if not entries:
        return {}
    return {name: float(np.mean([entry[name] for entry in entries])) for name in LOSS_NAMES}
