"""The door scenario, through the commands only: enrol half the people, check everyone else.

Enrol the first half of the identities (sorted folder names) with their first ``enrol``
photos (sorted file names); then check the other photos of the enrolled people (each should
be granted as themselves) and every photo of the other half (impostors: should be denied).
This is the protocol of dlib's anchor figures in ``reference/dlib_oracle/README.md``.

The commands run in this process (click's runner), so the models load once; each one is
called with exactly the arguments a user would type, and its JSON output is what is scored.

    CONVNET_APPS_WEIGHTS_DIR=../shared/weights python -m apps.face_access.evaluate \
        ../shared/data/faces/att_faces

One fixed split says little about a threshold: whether one look-alike lands among the
impostors decides it. ``--splits N`` runs the harder development protocol instead: every
photo is embedded once by the same pipeline, then N random splits each enrol a random half
of the people with ``--enrol`` random photos each and decide every other photo with the
commands' own rule (``GalleryIndex`` and ``decide``). It prints the mean and spread of the
true-accept rate, the wrong-person and impostor grants over all splits, the share of splits
that let an impostor in, and the nearest impostor of all: the largest safe threshold.

    python -m apps.face_access.evaluate ../shared/data/faces/att_faces --splits 200 --enrol 2

``--levers`` compares, on the same random splits, other ways to score a probe (cohort
normalisation, a per-person threshold from the enrolment spread, the margin's value) and
other embeddings (no mirror image, test-time augmentation by small shifts and scales),
each by its true-accept rate at the strictest threshold that grants no impostor in any
split (and at a pooled false-accept rate of 1e-3): see ``LEVER_SCORES``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
from click.testing import CliRunner

from apps.face_access.cli import check_command, enroll_command
from apps.face_access.decision import GalleryIndex, decide
from apps.face_access.models import DEFAULT_MODEL, resolve_model
from shared.cli import progress, runtime_option
from shared.errors import InputError
from shared.files import atomic_output
from shared.images import list_images, read_image, write_image
from shared.metrics import tar_at_far


@dataclass(frozen=True)
class DoorFigures:
    enrolled_people: int
    genuine_probes: int
    impostor_probes: int
    right_person: int  # genuine probes granted as themselves
    wrong_person: int  # genuine probes granted as someone else
    impostors_granted: int
    errors: int  # probes with no usable face (counted as not granted)

    @property
    def true_accept_rate(self) -> float:
        return self.right_person / self.genuine_probes

    @property
    def false_accept_rate(self) -> float:
        return self.impostors_granted / self.impostor_probes

    def summary(self) -> str:
        return (
            f"{self.enrolled_people} enrolled; TAR {self.true_accept_rate:.3f} "
            f"({self.right_person}/{self.genuine_probes}), wrong person {self.wrong_person}, "
            f"impostors granted {self.impostors_granted}/{self.impostor_probes} "
            f"(FAR {self.false_accept_rate:.3f}), no usable face {self.errors}"
        )


def _run(command, args: list[str], exit_codes: tuple[int, ...]) -> str:
    result = CliRunner().invoke(command, args)
    # Pass the commands' warnings on: above all the one saying YuNet was not found and the
    # Haar cascade stands in, which changes every figure (AT&T: TAR 0.96, one impostor in).
    click.echo(result.stderr, err=True, nl=False)
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    if crashed or result.exit_code not in exit_codes:
        raise RuntimeError(
            f"face command failed (exit {result.exit_code}): {result.stderr.strip()}"
        ) from result.exception
    return result.stdout


def door_scenario(
    folder: Path,
    db: Path,
    *,
    enrol: int = 5,
    threshold: float | None = None,
    model_args: tuple[str, ...] = (),
) -> DoorFigures:
    """Run the scenario on ``folder`` (one subfolder of photos per person) into database ``db``.

    ``threshold`` None uses the model's default; ``model_args`` are passed to both commands
    (e.g. ``("--model", "mobilefacenet")``).
    """
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    enrolled = people[: len(people) // 2]
    enrolments, probes = {}, []
    for person in people:
        photos = sorted(list_images(person), key=lambda p: p.name)
        if person in enrolled:
            enrolments[person.name] = photos[:enrol]
            probes += [(photo, person.name) for photo in photos[enrol:]]
        else:
            probes += [(photo, None) for photo in photos]
    return run_door(enrolments, probes, db, threshold=threshold, model_args=model_args)


def lfw_dev_door(
    folder: Path, db: Path, *, threshold: float | None = None, model_args: tuple[str, ...] = ()
) -> DoorFigures:
    """The LFW development door of ``folder``'s ``SPLITS.tsv``: each ``dev_enrol`` person
    enrolled from their 3 ``enrol_files``, their other photos checked as genuine probes, every
    ``dev_stranger`` photo as an impostor. These are news photos, some with bystanders: the
    enrolment takes the largest face (``--largest``), as a user enrolling from them would, and
    enrols what the protocol gives (``--force``: no look-alike or far-photo refusal)."""
    enrolments, probes = {}, []
    with open(folder / "SPLITS.tsv", newline="") as table:
        for row in csv.DictReader(table, delimiter="\t"):
            photos = sorted(list_images(folder / row["identity"]), key=lambda p: p.name)
            if row["role"] == "dev_enrol":
                chosen = set(row["enrol_files"].split(","))
                enrolments[row["identity"]] = [p for p in photos if p.name in chosen]
                probes += [(p, row["identity"]) for p in photos if p.name not in chosen]
            elif row["role"] == "dev_stranger":
                probes += [(p, None) for p in photos]
    return run_door(
        enrolments,
        probes,
        db,
        threshold=threshold,
        model_args=model_args,
        enrol_args=("--largest", "--force"),
    )


def write_chips(folder: Path, out: Path, pipeline) -> int:
    """A copy of the LFW door of ``folder`` (dev people and ``SPLITS.tsv``) in which every photo
    is replaced by the aligned chip of its door face, as PNG: face sets shipped as aligned chips
    (glint's photos are ArcFace chips) on development people. Returns the photos left out (no
    usable face)."""
    left_out = 0
    with open(folder / "SPLITS.tsv", newline="") as table:
        rows = [row for row in csv.DictReader(table, delimiter="\t") if row["role"] != "train"]
    for row in rows:
        (out / row["identity"]).mkdir(parents=True)
        for photo in list_images(folder / row["identity"]):
            try:
                chip = pipeline.usable_chip(read_image(photo), photo, largest=True)[1]
            except InputError:
                left_out += 1
                continue
            write_image(out / row["identity"] / f"{photo.stem}.png", chip)
        row["enrol_files"] = ",".join(
            f"{Path(name).stem}.png" for name in row["enrol_files"].split(",") if name
        )
    with open(out / "SPLITS.tsv", "w", newline="") as table:
        writer = csv.DictWriter(table, list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return left_out


def run_door(
    enrolments: dict[str, list[Path]],
    probes: list[tuple[Path, str | None]],
    db: Path,
    *,
    threshold: float | None = None,
    model_args: tuple[str, ...] = (),
    enrol_args: tuple[str, ...] = (),
) -> DoorFigures:
    """Enrol each person with ``face-enroll``, then check every probe (its true person, or None
    for a stranger) with one ``face-check --max-denials 0``; the figures of its JSON answers."""
    for name, photos in enrolments.items():
        args = [name, *map(str, photos), "--db", str(db), *enrol_args, *model_args]
        _run(enroll_command, args, exit_codes=(0,))
    args = ["--json", "--max-denials", "0", "--db", str(db)]
    if threshold is not None:
        args += ["--threshold", str(threshold)]
    photos = [str(photo) for photo, _ in probes]
    # Every answer is valid here: 0 all granted, 1 some denied, 2 some without a usable face.
    output = _run(check_command, [*args, *model_args, *photos], exit_codes=(0, 1, 2))
    answers = [json.loads(line) for line in output.splitlines()]
    if len(answers) != len(probes):
        raise RuntimeError(f"face-check answered {len(answers)} of {len(probes)} photos")
    granted = [a["name"] if a["decision"] == "granted" else None for a in answers]
    truths = [truth for _, truth in probes]
    pairs = list(zip(granted, truths, strict=True))
    return DoorFigures(
        enrolled_people=len(enrolments),
        genuine_probes=sum(t is not None for t in truths),
        impostor_probes=sum(t is None for t in truths),
        right_person=sum(g is not None and g == t for g, t in pairs),
        wrong_person=sum(g is not None and t is not None and g != t for g, t in pairs),
        impostors_granted=sum(g is not None and t is None for g, t in pairs),
        errors=sum(a["decision"] == "error" for a in answers),
    )


@dataclass(frozen=True)
class SplitFigures:
    """The door scenario over many random splits (``random_splits``)."""

    splits: int
    true_accept_rates: np.ndarray  # one per split
    wrong_person: int  # over all splits
    impostors_granted: int
    impostor_probes: int
    splits_with_impostor: int
    nearest_impostor: float  # the smallest best-person distance of any impostor probe

    def summary(self) -> str:
        rates = self.true_accept_rates
        return (
            f"{self.splits} splits; TAR {rates.mean():.3f} +/- {rates.std():.3f} "
            f"(min {rates.min():.3f}), wrong person {self.wrong_person}, impostors granted "
            f"{self.impostors_granted}/{self.impostor_probes} in "
            f"{self.splits_with_impostor}/{self.splits} splits, nearest impostor "
            f"{self.nearest_impostor:.3f}"
        )


def embed_folder(folder: Path, pipeline) -> tuple[np.ndarray, np.ndarray]:
    """Person index and unit vector of every photo of ``folder`` (NaN rows: no usable face)."""
    people = sorted(p for p in folder.iterdir() if p.is_dir())
    labels, vectors = [], []
    for index, person in enumerate(people):
        for photo in sorted(list_images(person), key=lambda p: p.name):
            try:
                vector = pipeline.face_vector(read_image(photo), photo).vector
            except InputError as err:
                click.echo(f"no usable face: {err}", err=True)
                vector = np.full(128, np.nan, np.float32)
            labels.append(index)
            vectors.append(vector)
    return np.array(labels), np.stack(vectors)


def random_splits(
    labels: np.ndarray,
    vectors: np.ndarray,
    *,
    splits: int,
    enrol: int,
    threshold: float,
    margin: float,
    seed: int = 0,
) -> SplitFigures:
    """The door scenario on ``splits`` random halves of the people, ``enrol`` random photos each.

    A photo without a usable face (a NaN row) enrols nothing and, as a probe, is not granted.
    """
    rng = np.random.default_rng(seed)
    people = np.unique(labels)
    usable = ~np.isnan(vectors).any(axis=1)
    rates, wrong, granted_impostors, impostor_probes, unlucky, nearest = [], 0, 0, 0, 0, math.inf
    for _ in range(splits):
        enrolled = rng.permutation(people)[: len(people) // 2]
        gallery_rows, probe_rows = [], []
        for person in people:
            rows = rng.permutation(np.flatnonzero(labels == person))
            if person in enrolled:
                gallery_rows += [row for row in rows[:enrol] if usable[row]]
                probe_rows += list(rows[enrol:])
            else:
                probe_rows += list(rows)
        names = [str(person) for person in people]
        index = GalleryIndex(names, vectors[gallery_rows], labels[gallery_rows])
        right = genuine = split_impostors = 0
        for row in probe_rows:
            is_enrolled = labels[row] in enrolled
            genuine += is_enrolled
            impostor_probes += not is_enrolled
            if not usable[row]:
                continue
            decision = decide(index, vectors[row], threshold, margin)
            if not is_enrolled:
                nearest = min(nearest, decision.distance)
            if decision.granted:
                if not is_enrolled:
                    split_impostors += 1
                elif decision.name == str(labels[row]):
                    right += 1
                else:
                    wrong += 1
        rates.append(right / genuine)
        granted_impostors += split_impostors
        unlucky += split_impostors > 0
    return SplitFigures(
        splits, np.array(rates), wrong, granted_impostors, impostor_probes, unlucky, nearest
    )


# Chip variants of the test-time augmentation: (scale about the chip centre, shift x, shift y)
# of the alignment template, in chip pixels.
TTA_TEMPLATES = ((1.0, 0, 0), (0.95, 0, 0), (1.05, 0, 0), (1.0, 3, 0), (1.0, -3, 0), (1.0, 0, 3))
TTA_TEMPLATES += ((1.0, 0, -3),)
PIPELINE_EMBEDDING = "chip + mirror"
TTA_EMBEDDING = "TTA (7 chips + mirrors)"


def embed_folder_variants(folder: Path, pipeline) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Person index per photo and three embeddings of each: the pipeline's (chip and mirror),
    the chip alone, and the mean over ``TTA_TEMPLATES`` chips and their mirrors."""
    labels, vectors = embed_folder(folder, pipeline)
    single, augmented = np.full_like(vectors, np.nan), np.full_like(vectors, np.nan)
    photos = [
        photo
        for person in sorted(p for p in folder.iterdir() if p.is_dir())
        for photo in sorted(list_images(person), key=lambda p: p.name)
    ]
    spec = pipeline.embedder.spec
    centre = np.full(2, spec.chip_size / 2)
    for row, photo in enumerate(photos):
        if np.isnan(vectors[row]).any():
            continue
        rgb = read_image(photo)
        face = pipeline.usable_face(rgb, photo)
        chips = np.stack(
            [
                dataclasses.replace(
                    spec, template=(spec.template - centre) * k + centre + shift
                ).chip(rgb, face.landmarks)
                for k, *shift in TTA_TEMPLATES
            ]
        )
        single[row] = pipeline.embedder.embed(chips[:1], mirror=False)[0]
        mean = pipeline.embedder.embed(chips, mirror=True).mean(axis=0)
        augmented[row] = mean / np.linalg.norm(mean)
    return labels, {
        "chip + mirror": vectors,
        "chip alone": single,
        "TTA (7 chips + mirrors)": augmented,
    }


def _nearest_others(sorted_distances: np.ndarray) -> np.ndarray:
    return sorted_distances[:, 1:6].mean(axis=1)


# Scores of a probe from its distances to every enrolled person (sorted, nearest first) and
# the enrolment spread of the nearest person, relative to the median spread (lower: grant).
LEVER_SCORES = {
    "distance (the rule)": lambda d, spread: np.where(d[:, 1] - d[:, 0] >= 0.05, d[:, 0], 9),
    "distance, no margin": lambda d, spread: d[:, 0],
    "distance, margin 0.10": lambda d, spread: np.where(d[:, 1] - d[:, 0] >= 0.10, d[:, 0], 9),
    "ratio best / second": lambda d, spread: d[:, 0] / d[:, 1],
    "cohort: best - mean(5 next)": lambda d, spread: d[:, 0] - _nearest_others(d),
    "cohort: best - 0.5 mean(5 next)": lambda d, spread: d[:, 0] - 0.5 * _nearest_others(d),
    "cohort: z-score vs all others": lambda d, spread: (
        (d[:, 0] - d[:, 1:].mean(1)) / d[:, 1:].std(1)
    ),
    "per person: best - 0.25 spread": lambda d, spread: d[:, 0] - 0.25 * spread,
}


def lever_table(
    labels: np.ndarray,
    embeddings: dict[str, np.ndarray],
    *,
    splits: int,
    enrol: int,
    seed: int = 0,
) -> list[str]:
    """One line per (embedding, score): TAR at zero impostors and at a pooled FAR of 1e-3.

    Each embedding is used for enrolment and probes alike, plus TTA at enrolment only with
    the pipeline's probes. Every variant sees the same splits.
    """
    pairs = [(name, name) for name in embeddings]
    if {TTA_EMBEDDING, PIPELINE_EMBEDDING} <= embeddings.keys():
        pairs.append((TTA_EMBEDDING, PIPELINE_EMBEDDING))
    lines = []
    for gallery_name, probe_name in pairs:
        rng = np.random.default_rng(seed)
        people = np.unique(labels)
        rows_distances, spreads, rights, truths = [], [], [], []
        for _ in range(splits):
            enrolled = np.sort(rng.permutation(people)[: len(people) // 2])
            gallery, owners, probes = [], [], []
            for person in people:
                rows = rng.permutation(np.flatnonzero(labels == person))
                if person in enrolled:
                    gallery += list(rows[:enrol])
                    owners += [person] * len(rows[:enrol])
                    probes += list(rows[enrol:])
                else:
                    probes += list(rows)
            g, p = embeddings[gallery_name][gallery], embeddings[probe_name][probes]
            owners = np.array(owners)
            pair = np.linalg.norm(p[:, None] - g[None], axis=2)
            per_person = np.stack([np.nanmin(pair[:, owners == q], axis=1) for q in enrolled], 1)
            spread = np.array(
                [
                    np.nanmean(
                        np.linalg.norm(g[owners == q][:, None] - g[owners == q][None], axis=2)
                    )
                    for q in enrolled
                ]
            )
            order = np.argsort(per_person, axis=1)
            rows_distances.append(np.take_along_axis(per_person, order, axis=1))
            spreads.append(spread[order[:, 0]])
            rights.append(enrolled[order[:, 0]] == labels[probes])
            truths.append(np.isin(labels[probes], enrolled))
        distances, spread = np.concatenate(rows_distances), np.concatenate(spreads)
        right, genuine = np.concatenate(rights), np.concatenate(truths)
        spread = np.nan_to_num(spread - np.nanmedian(spread))
        for rule, score_of in LEVER_SCORES.items():
            with np.errstate(divide="ignore", invalid="ignore"):  # 0/0: no score, denied
                score = np.nan_to_num(score_of(distances, spread), nan=9.0)
            impostor_scores = np.sort(score[~genuine])
            figures = []
            for far in (0.0, 1e-3):
                limit = impostor_scores[int(far * len(impostor_scores))]
                granted = (score < limit) & genuine & right
                figures.append(granted.sum() / genuine.sum())
            variant = gallery_name if gallery_name == probe_name else "TTA enrolment only"
            lines.append(
                f"{variant:24s} {rule:32s} TAR {figures[0]:.3f} (no impostor) "
                f"{figures[1]:.3f} (FAR 1e-3)"
            )
    return lines


# --- choosing a model's threshold on development data (glint never read) ------------------

DEVELOPMENT_FARS = (1e-3, 1e-4, 1e-5, 1e-6)


def development_photos(faces: Path) -> list[tuple[str, str, str, Path]]:
    """(set, person, role, photo) of every development photo under ``faces``: LFW's train,
    dev_enrol and dev_stranger people (``SPLITS.tsv``), AT&T's and CelebA's."""

    def with_splits(name: str, short: str) -> list[tuple[str, str, str, Path]]:
        with open(faces / name / "SPLITS.tsv", newline="") as table:
            roles = {row["identity"]: row["role"] for row in csv.DictReader(table, delimiter="\t")}
        return [
            (short, person, role, photo)
            for person, role in sorted(roles.items())
            for photo in sorted(list_images(faces / name / person), key=lambda p: p.name)
        ]

    att = [
        ("att", person.name, "att", photo)
        for person in sorted(p for p in (faces / "att_faces").iterdir() if p.is_dir())
        for photo in sorted(list_images(person), key=lambda p: p.name)
    ]
    return (
        with_splits("lfw_deepfunneled", "lfw") + att + with_splits("celeba_wild_subset", "celeba")
    )


def embed_centre_faces(photos: list[Path], pipeline, cache: Path | None) -> np.ndarray:
    """The embedding of each photo's face nearest the image centre (LFW's labelled face; the
    only face of the CelebA and AT&T photos), NaN rows where none is found. ``cache`` (an
    ``.npz``) keeps them for the next run with the same photos."""
    paths = np.array([str(photo.resolve()) for photo in photos])
    if cache is not None and cache.is_file():
        kept = np.load(cache)
        if np.array_equal(kept["path"], paths):
            return kept["vecs"]
    spec = pipeline.embedder.spec
    vectors = np.full((len(photos), pipeline.embedder.dimensions), np.nan, np.float32)
    for row, photo in enumerate(progress(photos, desc="embedding", unit="photo")):
        rgb = read_image(photo)
        faces = pipeline.detector.detect(rgb)
        if not faces:
            continue
        centre = np.array(rgb.shape[1::-1]) / 2
        face = min(faces, key=lambda f: np.hypot(*((f.box[:2] + f.box[2:]) / 2 - centre)))
        vectors[row] = pipeline.embedder.embed(spec.chip(rgb, face.landmarks)[None])[0]
    if cache is not None:
        with atomic_output(cache) as temp, open(temp, "wb") as stream:
            np.savez(stream, vecs=vectors, path=paths)
    return vectors


def pair_distances(vectors: np.ndarray, identities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Genuine and impostor distances of every pair of rows (unit vectors, no NaN rows)."""
    upper = np.triu_indices(len(vectors), 1)
    distances = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * (vectors @ vectors.T)[upper]))
    same = (identities[:, None] == identities[None])[upper]
    return distances[same], distances[~same]


def development_vectors(
    faces: Path, pipeline, cache: Path | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Set, person, role (arrays) and embedding (NaN where no face) of every development photo."""
    photos = development_photos(faces)
    vectors = embed_centre_faces([photo for *_, photo in photos], pipeline, cache)
    sets, people, roles = (np.array(column) for column in list(zip(*photos, strict=True))[:3])
    return sets, people, roles, vectors


def development_study(
    faces: Path, pipeline, *, cache: Path | None, threshold: float, margin: float
) -> list[str]:
    """Lines of the threshold study: pairwise TAR at FAR 1e-3 to 1e-6 over every pair of the
    development people, and random doors of LFW-train people at ``threshold``."""
    sets, people, roles, vectors = development_vectors(faces, pipeline, cache)
    identities = np.char.add(np.char.add(sets, "/"), people)
    usable = ~np.isnan(vectors).any(axis=1)
    genuine, impostor = pair_distances(vectors[usable], identities[usable])
    lines = [
        f"{len(vectors)} development photos, {int((~usable).sum())} without a face; "
        f"{len(genuine)} genuine and {len(impostor)} impostor pairs"
    ]
    for far in DEVELOPMENT_FARS:
        found = tar_at_far(genuine, impostor, far)
        lines.append(f"  FAR {far:g}: threshold {found.threshold:.3f}, TAR {found.tar:.3f}")
    nearest = ", ".join(f"{d:.3f}" for d in np.sort(impostor)[:5])
    lines.append(f"  nearest impostor pairs: {nearest}")
    # Random doors: half the LFW train people enrolled with 3 random photos each, the other
    # half as strangers, decided by the door's own rule.
    train = usable & (sets == "lfw") & (roles == "train")
    _, labels = np.unique(people[train], return_inverse=True)
    doors = random_splits(
        labels, vectors[train], splits=30, enrol=3, threshold=threshold, margin=margin
    )
    lines.append(f"  LFW train, 30 random doors at {threshold}, margin {margin}: {doors.summary()}")
    return lines


# --- choosing a model's enrolment rule on development data ----------------------------------

ENROLMENT_SETS = ("att", "lfw")  # CelebA's ~5 photos a person are left to training
ENROLLED_PHOTOS = (1, 2, 3, 5)
# The share of genuine photos the rule may refuse: a person enrolling their own photos should
# almost never need --force.
GENUINE_REFUSAL_GOAL = 0.005
FACTOR_STEP = 0.05


@dataclass(frozen=True)
class EnrolmentCases:
    """Nearest distances of a further photo to ``k`` enrolled photos of one person, over random
    enrolments: of the person's own photo (genuine) and of another person's (impostor)."""

    genuine: np.ndarray
    impostor: np.ndarray

    def refused(self, limit: float) -> float:
        """Share of genuine photos refused as "unlike the person's other photos"."""
        return float(np.mean(self.genuine > limit))

    def let_through(self, limit: float) -> float:
        """Share of another person's photos not refused by the distance rule alone."""
        return float(np.mean(self.impostor <= limit))


def enrolment_cases(
    people: np.ndarray, vectors: np.ndarray, *, cases: int, seed: int = 0
) -> EnrolmentCases:
    """``cases`` random enrolments of every person for each ``ENROLLED_PHOTOS`` count they have
    photos for (k enrolled and one more): the further photo's nearest distance to the k, and
    that of a random other person's photo (the rule of ``access.enrolment_conflicts``)."""
    rng = np.random.default_rng(seed)
    everyone = np.arange(len(people))
    genuine, impostor = [], []
    for person in np.unique(people):
        rows = np.flatnonzero(people == person)
        others = np.setdiff1d(everyone, rows)
        for enrolled in ENROLLED_PHOTOS:
            if len(rows) <= enrolled:
                continue
            for _ in range(cases):
                chosen = rng.choice(rows, enrolled + 1, replace=False)
                own, further = vectors[chosen[:-1]], vectors[chosen[-1]]
                stranger = vectors[rng.choice(others)]
                genuine.append(np.linalg.norm(own - further, axis=1).min())
                impostor.append(np.linalg.norm(own - stranger, axis=1).min())
    return EnrolmentCases(np.array(genuine), np.array(impostor))


def enrolment_rule_study(
    faces: Path, pipeline, *, cache: Path | None, threshold: float, cases: int = 50
) -> list[str]:
    """Lines of the enrolment rule's study: for each development set, how many genuine photos
    each factor of the threshold refuses and how many other people's photos it lets through,
    and the smallest factor (a multiple of ``FACTOR_STEP``) refusing under
    ``GENUINE_REFUSAL_GOAL`` of the genuine photos in every set."""
    sets, people, _, vectors = development_vectors(faces, pipeline, cache)
    usable = ~np.isnan(vectors).any(axis=1)
    by_set = {
        name: enrolment_cases(people[keep], vectors[keep], cases=cases)
        for name in ENROLMENT_SETS
        for keep in [usable & (sets == name)]
    }
    factors = np.round(np.arange(1.0, 2.0 + 1e-9, FACTOR_STEP), 2)
    lines = [
        f"threshold {threshold}; {cases} random enrolments of each person with "
        f"{'/'.join(map(str, ENROLLED_PHOTOS))} photos: "
        + "; ".join(
            f"{name} {len(found.genuine)} cases, genuine nearest distance 99th/99.5th/max "
            f"{np.percentile(found.genuine, 99):.3f}/{np.percentile(found.genuine, 99.5):.3f}/"
            f"{found.genuine.max():.3f}"
            for name, found in by_set.items()
        ),
        "factor  limit  " + "  ".join(f"{name} refused / others through" for name in by_set),
    ]
    chosen = None
    for factor in factors:
        limit = factor * threshold
        refused = [found.refused(limit) for found in by_set.values()]
        lines.append(
            f"{factor:6.2f}  {limit:5.3f}  "
            + "  ".join(
                f"{rate:6.2%} / {found.let_through(limit):6.2%}{' ' * (len(name) + 8)}"
                for (name, found), rate in zip(by_set.items(), refused, strict=True)
            )
        )
        if chosen is None and max(refused) < GENUINE_REFUSAL_GOAL:
            chosen = factor
    lines.append(
        f"smallest factor refusing under {GENUINE_REFUSAL_GOAL:.1%} of genuine photos in every "
        f"set: {chosen}"
    )
    return lines


@click.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="Embedder name or path.")
@click.option("--enrol", default=5, show_default=True, help="Photos enrolled per person.")
@click.option("--threshold", type=float, default=None, help="[default: the model's]")
@click.option("--margin", type=float, default=None, help="With --splits [default: the model's].")
@click.option(
    "--splits", default=0, show_default=True, help="Random splits (0: the fixed one, by CLI)."
)
@click.option("--seed", default=0, show_default=True, help="Of the random splits.")
@click.option("--levers", is_flag=True, help="Compare scores and embeddings (with --splits).")
@click.option(
    "--lfw-dev", is_flag=True, help="FOLDER is LFW: its dev door (SPLITS.tsv), by the commands."
)
@click.option(
    "--as-chips",
    is_flag=True,
    help="With --lfw-dev: every photo replaced by its aligned chip first (as glint's are).",
)
@click.option(
    "--study",
    is_flag=True,
    help="FOLDER holds the face sets: pairwise FAR thresholds and random doors on dev data.",
)
@click.option(
    "--enrol-rule",
    is_flag=True,
    help="FOLDER holds the face sets: the enrolment rule's factor on AT&T and LFW dev data.",
)
@click.option(
    "--cache",
    type=click.Path(path_type=Path),
    help="Embeddings kept for --study and --enrol-rule.",
)
@runtime_option
def main(
    folder: Path,
    model: str,
    enrol: int,
    threshold: float | None,
    margin: float | None,
    splits: int,
    seed: int,
    levers: bool,
    lfw_dev: bool,
    as_chips: bool,
    study: bool,
    enrol_rule: bool,
    cache: Path | None,
    runtime: str | None,
) -> None:
    """Print the door scenario's figures for FOLDER (a face set, one folder per person)."""
    spec, weights = resolve_model(model)
    threshold = spec.threshold if threshold is None else threshold
    margin = spec.margin if margin is None else margin
    model_args = ("--model", model) + (("--runtime", runtime) if runtime else ())
    if study or enrol_rule:
        from apps.face_access.embedding import FaceEmbedder  # loads TensorFlow
        from apps.face_access.pipeline import FacePipeline

        pipeline = FacePipeline(embedder=FaceEmbedder(spec, weights, runtime=runtime))
        if study:
            lines = development_study(
                folder, pipeline, cache=cache, threshold=threshold, margin=margin
            )
        else:
            lines = enrolment_rule_study(folder, pipeline, cache=cache, threshold=threshold)
        click.echo(f"{spec.name}: " + "\n".join(lines))
        sys.exit(0)
    if lfw_dev:
        with tempfile.TemporaryDirectory() as scratch:
            door, kind = folder, "photos"
            if as_chips:
                from apps.face_access.pipeline import FacePipeline

                door, kind = Path(scratch) / "chips", "aligned chips"
                pipeline = FacePipeline(chips_of=spec)
                left_out = write_chips(folder, door, pipeline)
                kind += f", {left_out} photos without a usable face left out"
            figures = lfw_dev_door(
                door, Path(scratch) / "faces.db", threshold=threshold, model_args=model_args
            )
        click.echo(
            f"LFW dev door ({kind}), {spec.name} at threshold {threshold}: {figures.summary()}"
        )
        sys.exit(0)
    if splits:
        from apps.face_access.embedding import FaceEmbedder  # loads TensorFlow
        from apps.face_access.pipeline import FacePipeline

        pipeline = FacePipeline(embedder=FaceEmbedder(spec, weights, runtime=runtime))
    if splits and levers:
        labels, embeddings = embed_folder_variants(folder, pipeline)
        for line in lever_table(labels, embeddings, splits=splits, enrol=enrol, seed=seed):
            click.echo(line)
        sys.exit(0)
    if splits:
        labels, vectors = embed_folder(folder, pipeline)
        figures = random_splits(
            labels,
            vectors,
            splits=splits,
            enrol=enrol,
            seed=seed,
            threshold=threshold,
            margin=margin,
        )
        click.echo(
            f"{folder.name}, {spec.name}, enrol {enrol}, threshold {threshold}, margin {margin}: "
            + figures.summary()
        )
        sys.exit(0)
    with tempfile.TemporaryDirectory() as scratch:
        figures = door_scenario(
            folder,
            Path(scratch) / "faces.db",
            enrol=enrol,
            threshold=threshold,
            model_args=model_args,
        )
    click.echo(f"{folder.name}, {spec.name} at threshold {threshold}: {figures.summary()}")
    sys.exit(0)


if __name__ == "__main__":
    main()
