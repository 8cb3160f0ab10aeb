"""Labelled face sets: a folder per person, read once into aligned chips and embeddings.

Evaluation (``face-eval``) and training (``face-train``) both start from a folder with one
subfolder of photos per person (``att_faces/s1/1.pgm``, ``lfw_deepfunneled/Ai_Sugiyama/...``).
Every photo goes through the same detection, checks and alignment as ``face-enroll``
(``FacePipeline.usable_chip``); a photo without a usable face (none, several, too small,
too blurred) is reported and skipped, never fatal. ``--aligned`` sets hold ready 112x112
crops in the ArcFace five-point layout (the glint set): they are not detected again but
re-cut onto the embedder's chip from the template's known landmark positions.

A ``SPLITS.tsv`` beside the person folders (``identity``, ``role`` columns, as in the LFW and
CelebA copies in ``../shared/data/faces``) lets a caller take only some roles.

Chips are cached as ``.npz`` files (``save_chips`` / ``load_chips``), so the photos of a
training set are detected and aligned once; embeddings likewise (``FaceSet.save``).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from shared.errors import InputError
from shared.images import list_images, read_image

SPLITS_FILENAME = "SPLITS.tsv"
SEVERAL_FACES = ("skip", "largest", "central")


@dataclass(frozen=True)
class Photo:
    path: Path
    person: str


def read_roles(folder: Path) -> dict[str, str]:
    """``identity -> role`` from ``folder/SPLITS.tsv``, or InputError naming the file."""
    splits = folder / SPLITS_FILENAME
    if not splits.is_file():
        raise InputError(f"{splits}: no such file (needed to select people by role)")
    with splits.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    if not rows or not {"identity", "role"} <= rows[0].keys():
        raise InputError(f"{splits}: needs 'identity' and 'role' columns")
    return {row["identity"]: row["role"] for row in rows}


def list_people(folder: Path, roles: Sequence[str] | None = None) -> list[str]:
    """Person folders of ``folder`` in sorted order, only those of ``roles`` if given."""
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder of person folders")
    people = sorted(path.name for path in folder.iterdir() if path.is_dir())
    if roles:
        role_of = read_roles(folder)
        unknown = set(roles) - set(role_of.values())
        if unknown:
            raise InputError(
                f"{folder / SPLITS_FILENAME}: no person has role {', '.join(sorted(unknown))} "
                f"(roles: {', '.join(sorted(set(role_of.values())))})"
            )
        people = [person for person in people if role_of.get(person) in roles]
    if not people:
        raise InputError(f"{folder}: no person folders found")
    return people


def list_photos(folder: Path, people: Iterable[str]) -> list[Photo]:
    """Every image of each person, in sorted file-name order."""
    return [
        Photo(path, person)
        for person in people
        for path in sorted(list_images(folder / person), key=lambda p: p.name)
    ]


@dataclass
class Chips:
    """Aligned chips of the photos that had a usable face, and the reasons for the others."""

    chips: np.ndarray  # (N, size, size, 3) uint8
    photos: list[Photo]
    skipped: list[str] = field(default_factory=list)  # "path: reason"

    @property
    def people(self) -> list[str]:
        return [photo.person for photo in self.photos]


def align_photos(
    photos: Sequence[Photo],
    pipeline,
    *,
    aligned: bool = False,
    several: str = "skip",
    progress=None,
) -> Chips:
    """Detect, check and align each photo as ``face-enroll`` does; skip (and say why) the rest.

    ``several``: what to do with a photo showing several faces: ``skip`` it (the rule of
    ``face-enroll``), take the ``largest`` face, or the ``central`` one (LFW labels the face
    nearest the centre). ``aligned``: the photos are ArcFace 112x112 crops (any square size:
    the template is scaled); no detection: the template's points are taken as the face's
    landmarks and ``pipeline``'s chip is cut from them. ``progress`` wraps
    the iteration (a progress bar).
    """
    from apps.face_access.alignment import ARCFACE_CHIP_SIZE, ARCFACE_TEMPLATE

    if several not in SEVERAL_FACES:
        raise ValueError(f"several must be one of {SEVERAL_FACES}, got {several!r}")
    chips, kept, skipped = [], [], []
    for photo in progress(photos) if progress else photos:
        try:
            rgb = read_image(photo.path)
            if aligned:
                if rgb.shape[0] != rgb.shape[1]:
                    raise InputError(f"{photo.path}: an aligned crop must be square")
                landmarks = ARCFACE_TEMPLATE * rgb.shape[0] / ARCFACE_CHIP_SIZE
                chip = pipeline.spec.chip(rgb, landmarks)
            else:
                _, chip, _ = pipeline.usable_chip(
                    rgb, photo.path, largest=several == "largest", central=several == "central"
                )
        except InputError as err:
            skipped.append(str(err))
            continue
        chips.append(chip)
        kept.append(photo)
    size = pipeline.spec.chip_size
    stacked = np.stack(chips) if chips else np.zeros((0, size, size, 3), np.uint8)
    return Chips(stacked, kept, skipped)


def save_chips(path: Path, chips: Chips) -> None:
    from shared.files import atomic_output

    with atomic_output(path) as temp, temp.open("wb") as handle:
        _write_chips(handle, chips)


def _write_chips(handle, chips: Chips) -> None:
    np.savez(
        handle,
        chips=chips.chips,
        paths=np.array([str(p.path) for p in chips.photos]),
        people=np.array(chips.people),
        skipped=np.array(chips.skipped, dtype=str),
    )


def load_chips(path: Path) -> Chips:
    with np.load(path) as data:
        photos = [
            Photo(Path(p), str(q)) for p, q in zip(data["paths"], data["people"], strict=True)
        ]
        return Chips(data["chips"], photos, [str(s) for s in data["skipped"]])


@dataclass
class FaceSet:
    """Embeddings of a labelled set: one row per usable photo, ``labels`` index ``names``."""

    vectors: np.ndarray
    labels: np.ndarray
    names: list[str]
    paths: list[str]
    model_id: str
    skipped: list[str] = field(default_factory=list)

    def save(self, path: Path) -> None:
        from shared.files import atomic_output

        with atomic_output(path) as temp, temp.open("wb") as handle:
            np.savez(
                handle,
                vectors=self.vectors,
                labels=self.labels,
                names=np.array(self.names),
                paths=np.array(self.paths),
                model_id=np.array(self.model_id),
                skipped=np.array(self.skipped, dtype=str),
            )

    @classmethod
    def load(cls, path: Path) -> FaceSet:
        """A set saved by ``save`` (or any ``.npz`` with ``vectors``, ``labels``, ``names``)."""
        try:
            with np.load(path) as data:
                return cls(
                    vectors=data["vectors"].astype(np.float32),
                    labels=data["labels"].astype(np.int64),
                    names=[str(n) for n in data["names"]],
                    paths=[str(p) for p in data["paths"]] if "paths" in data else [],
                    model_id=str(data["model_id"]) if "model_id" in data else "unknown",
                    skipped=[str(s) for s in data["skipped"]] if "skipped" in data else [],
                )
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"{path}: not an embeddings file saved by face-eval ({err})") from err

    def rows_of(self, people: Iterable[str]) -> np.ndarray:
        """Row indices of the given people."""
        wanted = [self.names.index(person) for person in people if person in self.names]
        return np.flatnonzero(np.isin(self.labels, wanted))


def embed_chips(chips: Chips, embedder, model_id: str) -> FaceSet:
    """Embed aligned chips into a ``FaceSet`` (labels follow the order people first appear)."""
    names = list(dict.fromkeys(chips.people))
    index = {name: i for i, name in enumerate(names)}
    vectors = embedder.embed(chips.chips) if len(chips.chips) else np.zeros((0, 128), np.float32)
    return FaceSet(
        vectors=np.asarray(vectors, np.float32),
        labels=np.array([index[p] for p in chips.people], np.int64),
        names=names,
        paths=[str(p.path) for p in chips.photos],
        model_id=model_id,
        skipped=list(chips.skipped),
    )


@dataclass(frozen=True)
class PairsFile:
    """An LFW-style pairs file: photo paths and whether each pair is one person."""

    first: list[Path]
    second: list[Path]
    same: np.ndarray  # bool


def _lfw_photo(folder: Path, person: str, number: str) -> Path:
    if not number.isdigit():
        raise ValueError(number)
    return folder / person / f"{person}_{int(number):04d}.jpg"


def read_pairs_file(path: Path, images: Path | None = None) -> PairsFile:
    """Read LFW's ``pairs.txt`` layout: ``name n1 n2`` (same person) or ``name1 n1 name2 n2``.

    Photos are ``images/name/name_000n.jpg`` (``images`` defaults to the file's folder).
    A first line of one or two numbers (LFW's fold count and pairs per fold) is skipped;
    fields are separated by tabs or spaces. Any other line is an error naming the line.
    """
    images = images or path.parent
    first, second, same = [], [], []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the pairs file ({err})") from err
    for number, line in enumerate(lines, 1):
        fields = line.split()
        if not fields or (number == 1 and all(f.isdigit() for f in fields) and len(fields) <= 2):
            continue
        try:
            if len(fields) == 3:
                pair = (_lfw_photo(images, *fields[:2]), _lfw_photo(images, fields[0], fields[2]))
            elif len(fields) == 4:
                pair = (_lfw_photo(images, *fields[:2]), _lfw_photo(images, *fields[2:]))
            else:
                raise ValueError(line)
        except ValueError:
            raise InputError(
                f"{path}:{number}: expected 'name n1 n2' or 'name1 n1 name2 n2', got {line!r}"
            ) from None
        first.append(pair[0])
        second.append(pair[1])
        same.append(len(fields) == 3)
    if not same:
        raise InputError(f"{path}: no pairs in the file")
    return PairsFile(first, second, np.array(same))


def cached_chips(
    folder: Path,
    pipeline_factory,
    *,
    layout: str,
    roles: Sequence[str] | None = None,
    aligned: bool = False,
    several: str = "skip",
    cache: Path | None = None,
    progress=None,
) -> Chips:
    """``align_photos`` of a folder's people (of ``roles``), kept in ``cache`` for the next run.

    The cache file is named by a digest of the folder's absolute path, the roles, the
    options, the chip ``layout`` (``EmbedderSpec.chip_layout``: two models that cut the same
    chips share them) and the list of photo files, so a changed folder is read again.
    ``pipeline_factory()`` is only called when the photos must be read.
    """
    import hashlib

    photos = list_photos(folder, list_people(folder, roles))
    if not photos:
        raise InputError(f"{folder}: no images in the person folders")
    cached = None
    if cache is not None:
        paths = [str(p.path) for p in photos]
        key = repr((str(folder.resolve()), roles, aligned, several, layout, paths))
        digest = hashlib.sha256(key.encode()).hexdigest()[:16]
        cached = cache / f"chips-{folder.name}-{digest}.npz"
        if cached.is_file():
            return load_chips(cached)
    chips = align_photos(
        photos, pipeline_factory(), aligned=aligned, several=several, progress=progress
    )
    if cached is not None:
        cache.mkdir(parents=True, exist_ok=True)
        save_chips(cached, chips)
    return chips


def concatenate_chips(parts: Sequence[Chips]) -> Chips:
    """One set from several (person names must not clash between the parts)."""
    return Chips(
        np.concatenate([part.chips for part in parts]),
        [photo for part in parts for photo in part.photos],
        [reason for part in parts for reason in part.skipped],
    )
