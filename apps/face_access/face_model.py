"""A trainable face embedder: the task model ``face-train`` fits and the other commands load.

``FaceEmbeddingTask`` follows keras-hub's task shape: one ``keras.Model`` that owns its
preprocessing (aligned RGB chips in, cut as one catalogued model's: dlib's 150x150 or the
112x112 ArcFace chip; whatever its backbone wants inside), its
backbone, the L2 normalisation and its loss (a triplet loss with online mining from
``shared.losses``), so training is ``compile`` + ``fit`` and the saved ``.keras`` file is
the whole embedder. The file carries its own ``model_id``: a database stores it with every
embedding, so vectors of a trained model are never compared with another model's.

Three starting points (``build_task``):
- ``sface``: the door's default embedder, SFace imported from its ONNX file, fine-tuned on
  ArcFace chips; ``freeze_until`` keeps the layers before a named one fixed (``conv_10``...).
- ``dlib``: dlib's face ResNet with its real weights (folded inference form), fine-tuned;
  ``freeze_until`` keeps the layers before a named stage fixed.
- ``nn4.small2``: FaceNet's Inception network (OpenFace), random initialisation, trained from
  scratch on the chips shrunk to its 96x96 input.

A saved task is one more embedder spec (``models.trained_spec``): ``face-eval``,
``face-enroll`` and ``face-check`` take it as ``--model PATH`` and run it through the same
``FaceEmbedder`` as the catalogued models. Its ``threshold`` (the distance of the validation
FAR ``face-train`` aimed at, set at the best epoch) is the door's default for it.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import keras
from keras import layers, ops

from apps.face_access.models import (
    BACKBONE_CHIPS,
    BACKBONES,
    PRETRAINED,
    SFACE,
    SPECS,
    weights_path,
)
from shared.errors import InputError
from shared.losses import DEFAULT_MARGIN, TripletLoss, pairwise_squared_distances
from shared.saving import load_saved_model

# dlib's input means (RGB) and scale, as shared.backbones.dlib_resnet.preprocess_input.
_DLIB_MEANS = (122.782, 117.001, 104.298)
_DLIB_SCALE = 256.0
NN4_SIZE = 96


@keras.saving.register_keras_serializable(package="convnet_apps")
class ChipPreprocessing(layers.Layer):
    """Aligned RGB chips (0-255) -> a backbone's input, inside the model.

    ``dlib``: subtract dlib's per-channel means, divide by 256. ``unit96``: shrink to 96x96
    (area-like bilinear with antialiasing) and scale to [0, 1], OpenFace's input. ``raw``:
    the pixels as floats (SFace's graph scales them itself).
    """

    def __init__(self, mode: str, **kwargs):
        super().__init__(**kwargs)
        if mode not in ("dlib", "unit96", "raw"):
            raise ValueError(f"unknown chip preprocessing {mode!r}")
        self.mode = mode

    def call(self, chips):
        chips = ops.cast(chips, "float32")
        if self.mode == "raw":
            return chips
        if self.mode == "dlib":
            return (chips - ops.convert_to_tensor(_DLIB_MEANS)) / _DLIB_SCALE
        small = ops.image.resize(chips, (NN4_SIZE, NN4_SIZE), antialias=True)
        return small / 255.0

    def compute_output_shape(self, input_shape):
        if self.mode in ("dlib", "raw"):
            return input_shape
        return (input_shape[0], NN4_SIZE, NN4_SIZE, input_shape[-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package="convnet_apps")
class FaceEmbeddingTask(keras.Model):
    """Chips (N, S, S, 3) cut as ``chip``'s (a ``models.SPECS`` name) -> unit 128-d
    embeddings, trained with a mined triplet loss.

    ``fit`` takes ``(chips, person_labels)`` batches made of P people x K photos. Besides
    the loss it tracks, per batch: ``active_triplets`` (the fraction of valid triplets that
    still violate the margin), ``positive_distance`` and ``negative_distance`` (mean
    Euclidean distances of same-person and different-person pairs).
    """

    def __init__(
        self,
        backbone: keras.Model,
        preprocessing: str,
        model_id: str,
        mining: str = "semi_hard",
        margin: float = DEFAULT_MARGIN,
        threshold: float | None = None,
        chip: str = "dlib",  # files saved before there was a choice learnt on dlib's chip
        base: str | None = None,  # the catalogued model it was fine-tuned from, if any
        **kwargs,
    ):
        size = SPECS[chip].chip_size
        chips = keras.Input((size, size, 3), name="chips")
        x = ChipPreprocessing(preprocessing, name="preprocessing")(chips)
        x = backbone(x)
        embeddings = layers.UnitNormalization(axis=-1, name="embedding")(x)
        super().__init__(chips, embeddings, **kwargs)
        self.backbone = backbone
        self.preprocessing = preprocessing
        self.model_id = model_id
        self.mining = mining
        self.margin = margin
        self.threshold = threshold
        self.chip = chip
        self.base = base
        self.active_tracker = keras.metrics.Mean(name="active_triplets")
        self.positive_tracker = keras.metrics.Mean(name="positive_distance")
        self.negative_tracker = keras.metrics.Mean(name="negative_distance")

    def compile(self, optimizer="auto", loss="auto", **kwargs):
        """keras-hub style defaults: Adam 1e-4 and this task's triplet loss."""
        if optimizer == "auto":
            optimizer = keras.optimizers.Adam(1e-4)
        if loss == "auto":
            loss = TripletLoss(self.mining, self.margin)
        super().compile(optimizer=optimizer, loss=loss, **kwargs)

    def compile_from_config(self, config):
        """Restore the compiled state of a saved task (so a checkpoint keeps its optimizer)."""
        self.compile(**keras.saving.deserialize_keras_object(config))
        if self.optimizer is not None and self.built:
            self.optimizer.build(self.trainable_variables)

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        loss = super().compute_loss(x, y, y_pred, sample_weight, training)
        labels = ops.reshape(y, (-1,))
        squared = ops.stop_gradient(pairwise_squared_distances(y_pred))
        distances = ops.sqrt(squared + 1e-12)
        same = ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(labels, 0))
        positive = ops.logical_and(
            same, ops.logical_not(ops.cast(ops.eye(ops.shape(labels)[0]), "bool"))
        )
        negative = ops.logical_not(same)
        # Valid triplets (a, p, n) and those with d²(a,p) - d²(a,n) + margin > 0.
        valid = ops.logical_and(ops.expand_dims(positive, 2), ops.expand_dims(negative, 1))
        violation = ops.expand_dims(squared, 2) - ops.expand_dims(squared, 1) + self.margin
        active = ops.logical_and(valid, violation > 0)
        count = ops.sum(ops.cast(valid, "float32"))
        self.active_tracker.update_state(
            ops.divide_no_nan(ops.sum(ops.cast(active, "float32")), count)
        )
        for tracker, mask in ((self.positive_tracker, positive), (self.negative_tracker, negative)):
            weights = ops.cast(mask, "float32")
            tracker.update_state(ops.divide_no_nan(ops.sum(distances * weights), ops.sum(weights)))
        return loss

    def get_config(self):
        return {
            "backbone": keras.saving.serialize_keras_object(self.backbone),
            "preprocessing": self.preprocessing,
            "model_id": self.model_id,
            "mining": self.mining,
            "margin": self.margin,
            "threshold": self.threshold,
            "chip": self.chip,
            "base": self.base,
            "name": self.name,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.saving.deserialize_keras_object(config["backbone"])
        return cls(**config)


def new_model_id(backbone: str) -> str:
    """A fresh id for a newly trained model: its embeddings match no other model's."""
    return f"face-train/{backbone}/{uuid.uuid4().hex[:12]}"


def build_task(
    backbone: str = "dlib",
    *,
    freeze_until: str | None = None,
    mining: str = "semi_hard",
    margin: float = DEFAULT_MARGIN,
    weights: str | Path | None = "pretrained",
) -> FaceEmbeddingTask:
    """A task ready to ``compile`` and ``fit``: ``sface`` or ``dlib`` (pretrained,
    fine-tuned) or ``nn4.small2`` (random initialisation).

    ``freeze_until``: layers of the backbone before the first one whose name starts with it
    are not trained (sface: ``conv_10`` freezes the first nine blocks; dlib: ``stage3`` the
    stem and stages 1-2; nn4.small2: ``inception_4a``). ``weights``: the pretrained file
    (``"pretrained"``: the weights resolver finds the backbone's catalogued one; dlib also
    takes None, random initialisation).
    """
    if backbone == "sface":
        explicit = None if weights == "pretrained" else weights
        network = SFACE.build(weights_path(SFACE, explicit))
        # Its one batch normalisation (before the last layer) keeps the statistics it was
        # trained with: re-estimating them from P x K batches of a few people would move
        # every embedding.
        for layer in network.layers:
            if isinstance(layer, layers.BatchNormalization):
                layer.trainable = False
        preprocessing = "raw"
    elif backbone == "dlib":
        from shared.backbones.dlib_resnet import dlib_face_resnet

        dlib_weights = "dlib" if weights == "pretrained" else weights
        network = dlib_face_resnet(dlib_weights, folded=True, name="dlib_face_resnet")
        preprocessing = "dlib"
    elif backbone == "nn4.small2":
        from shared.backbones.nn4_small2 import nn4_small2

        network = nn4_small2()
        preprocessing = "unit96"
    else:
        raise InputError(f"unknown backbone {backbone!r} (choose from {', '.join(BACKBONES)})")
    if freeze_until:
        names = [layer.name for layer in network.layers]
        first = next((i for i, n in enumerate(names) if n.startswith(freeze_until)), None)
        if first is None:
            raise InputError(f"--freeze-until {freeze_until}: no layer of {backbone} starts so")
        for layer in network.layers[:first]:
            layer.trainable = False
    return FaceEmbeddingTask(
        network,
        preprocessing,
        new_model_id(backbone),
        mining,
        margin,
        chip=BACKBONE_CHIPS[backbone],
        base=backbone if backbone in PRETRAINED else None,
    )


def register_backbone_layers() -> None:
    """Make the backbones' own layers known to Keras, as loading a saved task needs.

    They (LRN and L2 pooling in nn4.small2, dlib's folded blocks) are registered when their
    modules are imported, which a fresh process (face-check, face-train --resume) has not done.
    """
    import shared.backbones.dlib_resnet
    import shared.backbones.layers  # noqa: F401


def load_task(path: str | Path) -> FaceEmbeddingTask:
    """A task saved by ``face-train`` (a ``.keras`` file), or InputError naming the file."""
    register_backbone_layers()
    return load_saved_model(path, FaceEmbeddingTask, "a face embedder", "face-train")
