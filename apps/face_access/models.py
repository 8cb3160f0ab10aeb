"""The face embedders the door can use, one spec each, and ``--model`` resolution.

An ``EmbedderSpec`` carries everything the app needs to use a model: where its file comes
from (a row of ``data/weights.tsv``), how to build the Keras network from it, the chip it
expects (template, size, sampling), its input scaling, whether the mirror image is averaged
in, the id stored with every embedding, the door's default threshold and margin for it, and
how far from a person's own photos enrolment lets a new one be. Adding a model is one entry in
``SPECS``.

A model trained by ``face-train`` (a ``.keras`` file) is one more spec, made from the file
(``trained_spec``): dlib's chip, its own model id and the threshold chosen on its validation
people, all read from the file without loading it.

``resolve_model`` is the one place where a ``--model`` value (a name, or the path of a
weights file) and a database's enrolled model become the spec to run; ``face-enroll``,
``face-check`` and the evaluation tools all call it, so a database enrolled with one model
is never checked with another.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from apps.face_access.alignment import (
    ARCFACE_CHIP_SIZE,
    ARCFACE_TEMPLATE,
    CHIP_SIZE,
    YUNET_CHIP_TEMPLATE,
    align_face,
    already_aligned,
    warp_face,
)
from shared.errors import InputError
from shared.weights import catalogue, file_digest, resolve_file


def _build_onnx(path: Path):
    from shared.backbones.onnx_import import onnx_to_keras

    return onnx_to_keras(path)


def _build_dlib(path: Path):
    from shared.backbones.dlib_resnet import dlib_face_resnet

    # The inference form with dlib's affine layers folded into the convolutions: the same
    # descriptors (oracle test), 10 to 15 % faster.
    return dlib_face_resnet(path, folded=True)


@functools.lru_cache(maxsize=16)
def _repeated(values: tuple[float, ...], times: int) -> np.ndarray:
    """``values`` as float32, repeated ``times`` over (a chip's per-channel constants)."""
    repeated = np.tile(np.asarray(values, np.float32), times)
    repeated.flags.writeable = False  # shared by every call
    return repeated


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per model
class EmbedderSpec:
    """What the door needs to know about one face-embedding model."""

    name: str  # the --model value
    model_id: str  # stored with every embedding; change it whenever the vectors would change
    catalogue: str  # model name in data/weights.tsv
    filename: str
    build: Callable[[Path], object]  # weights file -> keras.Model (chips -> raw descriptors)
    chip_size: int
    template: np.ndarray  # YuNet's 5 points in chip pixels
    dlib_sampling: bool  # dlib's extract_image_chip (align_face), else a plain warp
    input_mean: tuple[float, float, float]  # network input = (RGB pixel - mean) / std
    input_std: tuple[float, float, float]
    mirror: bool  # average the chip's embedding with its mirror image's
    # Largest distance (unit vectors) granted by default; None for a trained model whose file
    # carries none: the database's threshold (face-eval --recommend-threshold --db) is needed.
    threshold: float | None
    margin: float  # how much nearer than the second person the best must be
    # Enrolment refuses a photo farther than this times the threshold from all of the person's
    # other photos (``access.enrolment_conflicts``; ``--force`` overrides). Chosen per model on
    # development data by one rule (``python -m apps.face_access.evaluate FACES --enrol-rule``):
    # the smallest multiple of 0.05 that refuses under 0.5 % of genuine photos in AT&T and in
    # the LFW train/dev people, over random enrolments of 1, 2, 3 and 5 photos.
    far_from_own_factor: float
    # The inner face (brows to chin, cheek to cheek) on this chip, where sharpness is judged.
    sharpness_region: tuple[slice, slice]
    # int8 on OpenVINO: the quantisation preset (``shared.quantize``) in ``data/quantization``,
    # made by ``python -m apps.face_access.int8``. A new preset gives other vectors: give it a
    # new file name and the spec a new ``model_id``.
    quantization: str | None = None

    @property
    def chip_layout(self) -> str:
        """What makes this spec's chips what they are (two specs with the same cut the same
        chips): size, sampling and template. Cached chips are keyed by it."""
        sampling = "dlib" if self.dlib_sampling else "warp"
        points = ",".join(f"{v:.2f}" for v in np.asarray(self.template).ravel())
        return f"{self.chip_size}/{sampling}/{points}"

    def network_input(self, chips: np.ndarray) -> np.ndarray:
        """Chips (N, size, size, 3) uint8 as the network takes them: scaled float32."""
        chips = np.asarray(chips)
        # Each chip as one row, the channels' constants repeated along it: broadcasting over a
        # trailing axis of 3 runs numpy's loops 3 values at a time, ten times slower (0.19
        # against 0.02 ms a 112x112 chip, measured), a percent of a door check.
        pixels = int(np.prod(chips.shape[1:-1]))
        mean, std = (_repeated(values, pixels) for values in (self.input_mean, self.input_std))
        rows = chips.reshape(len(chips), -1).astype(np.float32)
        return ((rows - mean) / std).reshape(chips.shape)

    def chip(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """The aligned chip of the face with these YuNet landmarks; an image that already is
        one (``alignment.already_aligned``) as it is."""
        if already_aligned(rgb, landmarks, self.template, self.chip_size):
            return rgb
        cut = align_face if self.dlib_sampling else warp_face
        return cut(rgb, landmarks, self.template, self.chip_size)


SFACE = EmbedderSpec(
    name="sface",
    model_id="sface-2021dec-int8bq/arcface112/l2",
    catalogue="sface",
    filename="face_recognition_sface_2021dec_int8bq.onnx",
    build=_build_onnx,
    chip_size=ARCFACE_CHIP_SIZE,
    template=ARCFACE_TEMPLATE,
    dlib_sampling=False,
    # OpenCV's FaceRecognizerSF feeds raw RGB 0..255; the graph itself scales it.
    input_mean=(0.0, 0.0, 0.0),
    input_std=(1.0, 1.0, 1.0),
    # No mirror image: it would double the embedding time of a check (goal: 20 ms end to end).
    mirror=False,
    # Chosen on development data only, by one rule for every model (face_access README,
    # "Choosing the threshold"; ``python -m apps.face_access.evaluate FACES --study``): the
    # pairwise FAR of 1e-6 over the 11.6 million impostor pairs of the LFW train/dev, AT&T and
    # CelebA people (0.958 here), so that a door of 300 enrolled faces facing 300 strangers
    # expects under 0.1 stranger grants, rounded down to a multiple of 0.05 for safety.
    # 30 random doors of LFW-train people at 0.95: TAR 0.958, 5 of 35,010 strangers in.
    threshold=0.95,
    # No wrong-person grant on development data at any margin; 0.05 costs no TAR there
    # (0.10 costs 0.2 points at 1.0) and guards a probe that is near two enrolled people.
    margin=0.05,
    # 1.25: genuine photos refused 0.30 % (AT&T) and 0.13 % (LFW); another person's photo let
    # through by this rule alone 2.0 % and 1.9 % (at 1.20: 0.50 % refused on AT&T; the old
    # common 1.3: 7.3 % and 8.3 % through).
    far_from_own_factor=1.25,
    # The inner face on the ArcFace chip (eyes at y = 52, mouth at y = 92); on every
    # development photo SFace's chips score at least 14.8 (AT&T, 1st percentile), far above
    # the gate.
    sharpness_region=(slice(45, 105), slice(26, 86)),
)
MOBILEFACENET = dataclasses.replace(
    SFACE,
    name="mobilefacenet",
    model_id="mobilefacenet-foamliu/arcface112/l2",
    catalogue="mobilefacenet",
    filename="MobileFaceNet.onnx",
    # x / 255, then ImageNet's mean and std (foamliu's training transform), in pixel units.
    input_mean=(0.485 * 255, 0.456 * 255, 0.406 * 255),
    input_std=(0.229 * 255, 0.224 * 255, 0.225 * 255),
    # SFace's rule: pairwise FAR 1e-6 on the development pairs at 0.931, rounded down. 30
    # random doors of LFW-train people at 0.90: TAR 0.852, none of 35,010 strangers in.
    threshold=0.9,
    # 1.35: genuine photos refused 0.39 % (AT&T) and 0.47 % (LFW); another person's photo let
    # through by this rule alone 6.7 % and 1.7 % (the old common 1.3 refused 0.75 % and 1.0 %).
    far_from_own_factor=1.35,
)
DLIB = EmbedderSpec(
    name="dlib",
    # The id databases enrolled before the ArcFace models carry: they keep working.
    model_id="dlib-resnet-v1/yunet-5pt/flip-mean/l2",
    catalogue="dlib-face-resnet",
    filename="dlib_face_recognition_resnet_model_v1.dat",
    build=_build_dlib,
    chip_size=CHIP_SIZE,
    template=YUNET_CHIP_TEMPLATE,
    dlib_sampling=True,
    # dlib's input layer: (pixel - its stored means) / 256 (shared/backbones/dlib_resnet.py).
    input_mean=(122.782, 117.001, 104.298),
    input_std=(256.0, 256.0, 256.0),
    mirror=True,
    # Chosen on AT&T only by the development protocol of the README ("Choosing the defaults"):
    # 200 random splits of AT&T's 40 people into 20 enrolled (2, 3 or 5 random photos each)
    # and 20 impostors. The nearest impostor over all 200 splits (40,000 impostor probes)
    # came at 0.315 for every enrolment size; at 0.31 none is granted and the genuine probes
    # are granted at a mean rate of 0.960 (2 photos), 0.973 (3) and 0.981 (5). The margin
    # costs 0.1 to 0.2 points of TAR at 0.31 and removes the wrong-person grants that appear
    # as the threshold loosens (3 of 32,000 genuine probes at 0.33 with 2 photos).
    threshold=0.31,
    margin=0.05,
    # 1.40: genuine photos refused 0.07 % (AT&T) and 0.31 % (LFW); another person's photo let
    # through by this rule alone 6.2 % and 4.0 % (the old common 1.3 refused 1.05 % of LFW's
    # genuine photos: news photos vary more than AT&T's).
    far_from_own_factor=1.4,
    sharpness_region=(slice(40, 115), slice(35, 115)),
)


def int8_of(
    spec: EmbedderSpec, preset: str, threshold: float, far_from_own_factor: float
) -> EmbedderSpec:
    """``spec`` run in int8 (OpenVINO) with the quantisation ``preset``: other vectors (an int8
    vector lies 0.06 to 0.09 from the float one of the same chip, median on LFW dev chips), so
    its own model id, and its threshold and enrolment factor chosen by the float models' rules
    on the same development data."""
    return dataclasses.replace(
        spec,
        name=f"{spec.name}-int8",
        model_id=f"{spec.model_id}/{Path(preset).stem}",
        quantization=preset,
        threshold=threshold,
        far_from_own_factor=far_from_own_factor,
    )


# SFACE's rules in int8: the pairwise FAR 1e-6 distance is 0.944 (0.958 in float: quantisation
# moves a few impostor pairs nearer), rounded down 0.90: 30 random LFW-train doors TAR 0.915,
# none of 35,010 strangers in. Enrolment factor 1.30: genuine photos refused 0.35 % (AT&T) and
# 0.16 % (LFW), another person's let through 1.3 % and 1.1 %.
SFACE_INT8 = int8_of(SFACE, "sface-int8-1.json", threshold=0.9, far_from_own_factor=1.3)
# MOBILEFACENET's rules in int8: 0.937 (0.931 in float), so 0.90 as in float (30 doors: TAR 0.852,
# none of 35,010 in); factor 1.35 as in float (refused 0.38 % and 0.49 %).
MOBILEFACENET_INT8 = int8_of(
    MOBILEFACENET, "mobilefacenet-int8-1.json", threshold=0.9, far_from_own_factor=1.35
)
SPECS = {spec.name: spec for spec in (SFACE, MOBILEFACENET, DLIB, SFACE_INT8, MOBILEFACENET_INT8)}
DEFAULT_MODEL = "sface"
# face-train's starting points (``face_model.build_task``), here so that its --help needs no Keras.
BACKBONES = ("sface", "dlib", "nn4.small2")
# Backbones that start from the catalogued model of the same name.
PRETRAINED = ("sface", "dlib")
# The catalogued model whose chips each backbone learns on: the chip's size, template and
# sampling come from there, for training and for the saved model alike.
BACKBONE_CHIPS = {"sface": "sface", "dlib": "dlib", "nn4.small2": "dlib"}


def spec_for_model_id(model_id: str) -> EmbedderSpec | None:
    """The catalogued spec whose embeddings carry ``model_id`` (None if none does)."""
    return next((spec for spec in SPECS.values() if spec.model_id == model_id), None)


def _build_trained(path: Path):
    from apps.face_access.face_model import load_task

    return load_task(path)


def trained_settings(path: Path) -> dict:
    """The settings a ``face-train`` file (or checkpoint) was saved with, read without loading
    it: ``model_id``, ``threshold``, ``chip`` (the catalogued model whose chips it learns on;
    dlib's for files from before there was a choice), ..."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            saved = json.loads(archive.read("config.json"))
        is_task = saved.get("class_name") == "FaceEmbeddingTask"
        settings = dict(saved["config"])
        if is_task and not isinstance(settings.get("model_id"), str):
            raise ValueError("it carries no model id")
    except (OSError, KeyError, TypeError, ValueError, AttributeError, zipfile.BadZipFile) as err:
        raise InputError(f"{path}: not a face model saved by face-train ({err})") from None
    if not is_task:
        raise InputError(f"{path}: a Keras model, but not a face embedder saved by face-train")
    settings.setdefault("chip", "dlib")
    return settings


def trained_spec(path: Path) -> EmbedderSpec:
    """The spec of a ``face-train`` model (``.keras``), from the settings saved in the file.

    face-train learns on the chips of the catalogued model the file names (``chip``: SFace's
    ArcFace chip, or dlib's 150x150 one, which nn4.small2 shrinks inside the model), and the
    model scales the pixels itself; so the spec is that model's with the file's id (unique to
    that training run) and threshold.
    """
    settings = trained_settings(path)
    base, model_id = SPECS[settings["chip"]], settings["model_id"]
    return dataclasses.replace(
        base,
        name=str(path),
        model_id=model_id,
        catalogue="",
        filename=path.name,
        build=_build_trained,
        input_mean=(0.0, 0.0, 0.0),
        input_std=(1.0, 1.0, 1.0),
        threshold=settings.get("threshold"),
        # far_from_own_factor stays the base model's: not measured for a trained model
        # (``evaluate FACES --enrol-rule --model X.keras`` measures it).
    )


def _spec_for_path(path: Path) -> tuple[EmbedderSpec, Path]:
    """The spec of a weights file given by path.

    A catalogued file (same sha256) is that model. Another ``.dat`` is taken as a dlib
    ResNet and another ``.onnx`` as an ArcFace-chip embedder fed raw RGB like SFace (the
    convention of OpenCV's FaceRecognizerSF); their embeddings get an id of their own, keyed
    by the file's sha256, so they are never compared with the catalogued model's. A
    ``.keras`` file is a ``face-train`` model (``trained_spec``).
    """
    if not path.is_file():
        raise InputError(f"{path}: no such model file (--model takes {', '.join(SPECS)} or a path)")
    if path.suffix.lower() == ".keras":
        return trained_spec(path), path
    digest = file_digest(path)
    for spec in SPECS.values():
        entries = catalogue().get(spec.catalogue, [])
        if any(e.digest is not None and e.digest.hex == digest for e in entries):
            return spec, path
    base = {".dat": DLIB, ".onnx": SFACE}.get(path.suffix.lower())
    if base is None:
        raise InputError(
            f"{path}: not a face model (a dlib .dat, an ONNX file or a face-train .keras)"
        )
    return dataclasses.replace(
        base, name=str(path), model_id=f"{base.model_id}@{digest[:16]}"
    ), path


def resolve_model(
    choice: str | Path | None, enrolled: Sequence[str] = (), database: str | Path = "database"
) -> tuple[EmbedderSpec, Path | None]:
    """The spec to run and its weights file (None: let the resolver find the catalogued file).

    ``choice`` is a ``--model`` value: a name in ``SPECS``, a path, or None for the
    database's own model (``DEFAULT_MODEL`` for an empty database). ``enrolled`` are the model
    ids the database holds embeddings of. A choice that differs from the database's model is
    refused: embeddings of two models are never compared, and the way to move is to enrol the
    people again into a new database.
    """
    path: Path | None = None
    if choice is None:
        spec = _enrolled_spec(enrolled, database) if enrolled else SPECS[DEFAULT_MODEL]
    elif str(choice) in SPECS:
        spec = SPECS[str(choice)]
    else:
        spec, path = _spec_for_path(Path(choice))
    if enrolled and spec.model_id not in enrolled:
        held = ", ".join(_label(model_id) for model_id in enrolled)
        raise InputError(
            f"{database}: enrolled with {held}, not {spec.name}; embeddings of two models are "
            f"never compared. To move to {spec.name}, enrol everyone again into a new database "
            f"(face-enroll --from-folders PHOTOS --model {spec.name} --db NEW.db)"
        )
    return spec, path


def _label(model_id: str) -> str:
    spec = spec_for_model_id(model_id)
    return spec.name if spec is not None else model_id


def _enrolled_spec(enrolled: Sequence[str], database: str | Path) -> EmbedderSpec:
    if len(enrolled) > 1:
        raise InputError(
            f"{database}: holds embeddings of several models ({', '.join(map(_label, enrolled))}); "
            "choose one with --model"
        )
    spec = spec_for_model_id(enrolled[0])
    if spec is None:
        raise InputError(
            f"{database}: enrolled with {enrolled[0]}, a model file given by path; "
            "pass the same file with --model PATH"
        )
    return spec


def move_hint(spec: EmbedderSpec, database: str | Path) -> str | None:
    """A note for a database that keeps an older model than the default, saying how to move."""
    if spec.name.removesuffix("-int8") == DEFAULT_MODEL:
        return None  # the default, or its own network in int8 (chosen for speed)
    return (
        f"note: {database} was enrolled with {spec.name} and is checked with it; "
        f"{DEFAULT_MODEL} is the stronger default: to move, enrol everyone again into a new "
        f"database (face-enroll --from-folders PHOTOS --db NEW.db)"
    )


def weights_path(spec: EmbedderSpec, explicit: Path | None = None) -> Path:
    """The spec's weights file: ``explicit``, else found (or downloaded) by the resolver."""
    return resolve_file(spec.catalogue, spec.filename, explicit)
