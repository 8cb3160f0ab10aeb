"""How well an embedder tells people apart, and which threshold a door should use.

What ``face-eval`` computes, as functions on plain arrays so that any embedding (this
app's, another model's, dlib's own descriptors) can be scored the same way:

- ``verification_pairs``: every genuine pair of a labelled set (two photos of one person)
  and the impostor pairs (photos of two people), all of them or a seeded sample.
- ``evaluate_pairs``: ten-fold accuracy at the best threshold on a balanced set (the
  genuine pairs and as many impostor pairs, drawn with ``numpy.random.default_rng(seed)``,
  the protocol of dlib's figures in ``reference/dlib_oracle/README.md`` and of LFW), then
  ROC, AUC, EER and TAR at FAR 1e-2 / 1e-3 / 1e-4 over all impostor pairs given.
- ``door_simulation``: the door itself. The first ``enrol`` photos of each enrolled person
  are enrolled, their other photos are genuine probes, every photo of a stranger is an
  impostor probe; each probe is decided by the commands' own rule (``decision.decide``).
- ``recommend_threshold``: the threshold for a target FAR and how far to trust it: how
  many impostor pairs it rests on, the exact 95 % bound on the FAR it really has, and
  where the threshold could lie with another sample of impostors.

Distances are Euclidean between the vectors as given (unit vectors from this app's
embedders; dlib's raw descriptors for the oracle check). The metrics are those of
``shared.metrics``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from apps.face_access.decision import GalleryIndex, decide
from shared.metrics import (
    binomial_interval,
    cross_validated_accuracy,
    eer,
    roc_auc,
    roc_curve,
    tar_at_far,
    threshold_interval,
)

REPORTED_FARS = (1e-2, 1e-3, 1e-4)
# Above this many impostor pairs a seeded sample of this size is used (the ROC of 2 million
# pairs is already smooth at FAR 1e-4, with 200 impostors under the threshold).
DEFAULT_MAX_IMPOSTOR_PAIRS = 2_000_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Pairs:
    """Genuine and impostor pairs of a labelled set: row indices ``(i, j)`` and distances."""

    genuine: np.ndarray  # (G, 2) int
    genuine_distances: np.ndarray  # (G,)
    impostor: np.ndarray  # (I, 2) int
    impostor_distances: np.ndarray  # (I,)
    impostor_pairs_total: int  # before any sampling


def _distance_matrix(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    squared = np.sum(vectors**2, axis=1)
    gram = vectors @ vectors.T
    return np.sqrt(np.maximum(squared[:, None] + squared[None, :] - 2 * gram, 0.0))


def verification_pairs(
    vectors: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    *,
    max_impostor_pairs: int | None = DEFAULT_MAX_IMPOSTOR_PAIRS,
    seed: int = 0,
) -> Pairs:
    """All pairs ``i < j`` of rows (in ``numpy.triu_indices`` order), split by label.

    Impostor pairs beyond ``max_impostor_pairs`` are sampled without replacement with
    ``numpy.random.default_rng(seed)`` (kept in pair order). Rows with NaN (no usable
    face) must be removed by the caller.
    """
    labels = np.asarray(labels)
    vectors = np.asarray(vectors)
    if len(labels) != len(vectors):
        raise ValueError(f"{len(vectors)} vectors but {len(labels)} labels")
    if np.isnan(vectors).any():
        raise ValueError("vectors contain NaN (photos without a usable face must be dropped)")
    first, second = np.triu_indices(len(labels), k=1)
    same = labels[first] == labels[second]
    distances = _distance_matrix(vectors)[first, second]
    impostor = np.flatnonzero(~same)
    total = impostor.size
    if max_impostor_pairs is not None and total > max_impostor_pairs:
        keep = np.random.default_rng(seed).choice(total, max_impostor_pairs, replace=False)
        impostor = impostor[np.sort(keep)]
    genuine = np.flatnonzero(same)
    return Pairs(
        genuine=np.column_stack([first[genuine], second[genuine]]),
        genuine_distances=distances[genuine],
        impostor=np.column_stack([first[impostor], second[impostor]]),
        impostor_distances=distances[impostor],
        impostor_pairs_total=int(total),
    )


@dataclass(frozen=True)
class PairFigures:
    """The pairwise verification figures of one embedding on one set (``evaluate_pairs``)."""

    genuine_pairs: int
    impostor_pairs: int  # used for ROC, AUC, EER, TAR@FAR
    impostor_pairs_total: int  # that exist in the set
    balanced_impostor_pairs: int  # drawn for the ten-fold accuracy
    folds: int
    ten_fold_accuracy: float
    ten_fold_std: float
    ten_fold_thresholds: list[float]
    auc: float
    eer: float
    tar_at_far: dict[str, dict[str, float]]  # "0.001" -> TAR, threshold, impostors accepted
    median_genuine_distance: float
    median_impostor_distance: float

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_pairs(
    genuine: np.ndarray,
    impostor: np.ndarray,
    *,
    folds: int = 10,
    seed: int = 0,
    fars: Sequence[float] = REPORTED_FARS,
    impostor_pairs_total: int | None = None,
    balanced: bool = True,
) -> PairFigures:
    """Figures from genuine and impostor distances (lower: same person).

    The ten-fold accuracy is measured on the genuine pairs plus as many impostor pairs
    drawn from ``impostor`` with ``numpy.random.default_rng(seed).choice`` (accuracy on a
    set of 1 genuine pair to 40 impostors would say little), or on all pairs as given
    with ``balanced=False`` (a pairs file that is already balanced, its folds in order).
    ROC, AUC, EER and TAR@FAR use every impostor distance given.
    """
    genuine = np.asarray(genuine, dtype=np.float64)
    impostor = np.asarray(impostor, dtype=np.float64)
    if not genuine.size or not impostor.size:
        raise ValueError(
            f"need genuine and impostor pairs, got {genuine.size} and {impostor.size}"
            " (each person needs two photos with a usable face, and two people are needed)"
        )
    if balanced:
        count = min(genuine.size, impostor.size)
        drawn = np.random.default_rng(seed).choice(impostor.size, count, replace=False)
        cv = cross_validated_accuracy(genuine, impostor[drawn], folds=folds, seed=seed)
    else:
        count = impostor.size
        cv = cross_validated_accuracy(genuine, impostor, folds=folds, seed=seed)
    labels = np.concatenate([np.ones(genuine.size, bool), np.zeros(impostor.size, bool)])
    auc = roc_auc(labels, -np.concatenate([genuine, impostor]))
    table = {}
    for far in fars:
        result = tar_at_far(genuine, impostor, far)
        table[f"{far:g}"] = {
            "tar": result.tar,
            "threshold": result.threshold,
            "impostors_accepted": result.impostors_accepted,
        }
    return PairFigures(
        genuine_pairs=int(genuine.size),
        impostor_pairs=int(impostor.size),
        impostor_pairs_total=int(impostor_pairs_total or impostor.size),
        balanced_impostor_pairs=int(count),
        folds=folds,
        ten_fold_accuracy=cv.mean,
        ten_fold_std=cv.std,
        ten_fold_thresholds=[float(t) for t in cv.thresholds],
        auc=auc,
        eer=eer(genuine, impostor),
        tar_at_far=table,
        median_genuine_distance=float(np.median(genuine)),
        median_impostor_distance=float(np.median(impostor)),
    )


@dataclass(frozen=True)
class DoorFigures:
    """The door simulation (``door_simulation``) at one threshold."""

    threshold: float
    margin: float
    enrol: int
    enrolled_people: int
    stranger_people: int
    genuine_probes: int
    impostor_probes: int
    right_person: int
    wrong_person: int
    impostors_granted: int
    nearest_impostor: float | None

    @property
    def true_accept_rate(self) -> float:
        return self.right_person / self.genuine_probes if self.genuine_probes else math.nan

    def to_dict(self) -> dict:
        return {**asdict(self), "tar": self.true_accept_rate}

    def summary(self) -> str:
        return (
            f"door at threshold {self.threshold:g} (enrol {self.enrol}, {self.enrolled_people} "
            f"enrolled, {self.stranger_people} strangers): TAR {self.true_accept_rate:.3f} "
            f"({self.right_person}/{self.genuine_probes}), wrong person {self.wrong_person}, "
            f"impostors granted {self.impostors_granted}/{self.impostor_probes}"
        )


def door_simulation(
    vectors: np.ndarray,
    labels: Sequence[int] | np.ndarray,
    strangers: Sequence[int] | np.ndarray,
    *,
    enrol: int,
    threshold: float,
    margin: float,
) -> DoorFigures:
    """Enrol the first ``enrol`` rows of each person not in ``strangers``; decide every other row.

    Rows are taken in the order given (photos in sorted file-name order, as the oracle's
    door scenario enrols "the first 5 images"). A person with ``enrol`` photos or fewer is
    enrolled with all of them and gives no probe. Probes of strangers are impostors; a
    genuine probe granted as another person counts as wrong person, not as granted.
    """
    labels = np.asarray(labels)
    strangers = set(np.asarray(strangers).tolist())
    people = sorted(set(labels.tolist()))
    enrolled = [person for person in people if person not in strangers]
    if not enrolled:
        raise ValueError("the door simulation needs at least one enrolled person")
    gallery_rows, probes = [], []
    for person in people:
        rows = np.flatnonzero(labels == person)
        if person in strangers:
            probes += [(row, None) for row in rows]
        else:
            gallery_rows += list(rows[:enrol])
            probes += [(row, person) for row in rows[enrol:]]
    names = [str(person) for person in enrolled]
    owner = {person: index for index, person in enumerate(enrolled)}
    index = GalleryIndex(
        names, np.asarray(vectors)[gallery_rows], [owner[labels[row]] for row in gallery_rows]
    )
    right = wrong = granted_impostors = 0
    nearest = math.inf
    for row, truth in probes:
        result = decide(index, vectors[row], threshold, margin)
        if truth is None:
            nearest = min(nearest, result.distance)
            granted_impostors += result.granted
        elif result.granted:
            if result.name == str(truth):
                right += 1
            else:
                wrong += 1
    genuine_probes = sum(truth is not None for _, truth in probes)
    return DoorFigures(
        threshold=threshold,
        margin=margin,
        enrol=enrol,
        enrolled_people=len(enrolled),
        stranger_people=len(strangers & set(people)),
        genuine_probes=genuine_probes,
        impostor_probes=len(probes) - genuine_probes,
        right_person=right,
        wrong_person=wrong,
        impostors_granted=granted_impostors,
        nearest_impostor=None if math.isinf(nearest) else float(nearest),
    )


@dataclass(frozen=True)
class Recommendation:
    """A threshold for a target FAR, with what it rests on (``recommend_threshold``)."""

    far: float
    threshold: float
    tar: float
    impostor_pairs: int
    impostors_accepted: int
    far_upper_bound: float  # the true FAR at this threshold is below this, with CONFIDENCE
    threshold_low: float | None  # the threshold of a true FAR of ``far`` lies in [low, high]
    threshold_high: float | None
    confidence: float = CONFIDENCE
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        """Plain data; an open end of the threshold interval (infinite) becomes None."""
        data = asdict(self)
        for end in ("threshold_low", "threshold_high"):
            if data[end] is not None and math.isinf(data[end]):
                data[end] = None
        return data

    def summary(self) -> str:
        def shown(end: float | None, open_end: str) -> str:
            return open_end if end is None or math.isinf(end) else f"{end:.3f}"

        low, high = shown(self.threshold_low, "-inf"), shown(self.threshold_high, "+inf")
        lines = [
            f"recommended threshold {self.threshold:.4f} for FAR {self.far:g} "
            f"(TAR {self.tar:.3f} at it)",
            f"  rests on {self.impostors_accepted} of {self.impostor_pairs:,} impostor pairs "
            f"under it; with {self.confidence:.0%} confidence the true FAR there is below "
            f"{self.far_upper_bound:.2g}, and the threshold of FAR {self.far:g} lies in "
            f"[{low}, {high}]",
        ]
        return "\n".join(lines + [f"  warning: {w}" for w in self.warnings])


def recommend_threshold(
    genuine: np.ndarray, impostor: np.ndarray, far: float, confidence: float = CONFIDENCE
) -> Recommendation:
    """The strictest-rule threshold for ``far`` (``shared.metrics.tar_at_far``) and its trust.

    A FAR of 1e-3 measured on 1,000 impostor pairs rests on one pair: the returned bound
    says so (Clopper-Pearson), and a warning is added when fewer than 10 impostor pairs
    fall under the threshold or the sample cannot bound the threshold from above.
    """
    impostor = np.asarray(impostor, dtype=np.float64)
    result = tar_at_far(genuine, impostor, far)
    _, upper = binomial_interval(result.impostors_accepted, impostor.size, confidence)
    low, high = threshold_interval(impostor, far, confidence)
    warnings = []
    needed = math.ceil(10 / far)
    if result.impostors_accepted < 10:
        warnings.append(
            f"only {result.impostors_accepted} impostor pairs under the threshold; about "
            f"{needed:,} impostor pairs (more people or photos) are needed for a steady "
            f"FAR {far:g} threshold"
        )
    return Recommendation(
        far=far,
        threshold=result.threshold,
        tar=result.tar,
        impostor_pairs=int(impostor.size),
        impostors_accepted=result.impostors_accepted,
        far_upper_bound=upper,
        threshold_low=low,
        threshold_high=high,
        confidence=confidence,
        warnings=warnings,
    )


def roc_points(genuine: np.ndarray, impostor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(FAR, TAR) along the ROC curve of distances, for plotting."""
    labels = np.concatenate([np.ones(len(genuine), bool), np.zeros(len(impostor), bool)])
    far, tar, _ = roc_curve(labels, -np.concatenate([genuine, impostor]))
    return far, tar


def plot_roc(path, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str) -> None:
    """Write ROC curves (FAR on a log axis, TAR) to a PNG at ``path`` (written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    from shared.files import atomic_output

    figure, axes = plt.subplots(figsize=(6, 4.5), dpi=100)
    for label, (far, tar) in curves.items():
        positive = far > 0
        axes.step(far[positive], tar[positive], where="post", label=label)
    for far in REPORTED_FARS:
        axes.axvline(far, color="grey", linewidth=0.5, linestyle=":")
    axes.set_xscale("log")
    axes.set_xlabel("false accept rate (impostor pairs accepted)")
    axes.set_ylabel("true accept rate (genuine pairs accepted)")
    axes.set_ylim(0, 1.01)
    axes.set_title(title)
    axes.grid(True, which="major", alpha=0.3)
    axes.legend(loc="lower right")
    figure.tight_layout()
    with atomic_output(path) as temp:
        figure.savefig(temp, format="png")
    plt.close(figure)


DEFAULT_DOOR_FAR = 1e-3


def faceset_report(
    faceset,
    *,
    strangers: Sequence[str] | None = None,
    enrol: int = 3,
    threshold: float | None,
    margin: float,
    folds: int = 10,
    seed: int = 0,
    max_impostor_pairs: int | None = DEFAULT_MAX_IMPOSTOR_PAIRS,
    far: float | None = None,
) -> tuple[dict, tuple[np.ndarray, np.ndarray]]:
    """Everything ``face-eval`` reports on a labelled set of embeddings, and the distances.

    ``faceset`` has ``vectors`` (N, d), ``labels`` (N,) indexing ``names``, ``skipped``
    (reasons of the photos left out) and ``model_id``.

    ``strangers``: names of the people who never enrol in the door simulation (default:
    the second half of the people in sorted order, the oracle's protocol). ``far``: also
    recommend a threshold for that FAR. ``threshold`` None (a model that carries none): the
    door runs at the threshold of FAR ``far`` (1e-3 if None) on these pairs. Returns the
    report (plain data, JSON-ready) and ``(genuine, impostor)`` distances for a ROC plot.
    """
    pairs = verification_pairs(
        faceset.vectors, faceset.labels, max_impostor_pairs=max_impostor_pairs, seed=seed
    )
    figures = evaluate_pairs(
        pairs.genuine_distances,
        pairs.impostor_distances,
        folds=folds,
        seed=seed,
        impostor_pairs_total=pairs.impostor_pairs_total,
    )
    if threshold is None:
        threshold = tar_at_far(
            pairs.genuine_distances, pairs.impostor_distances, far or DEFAULT_DOOR_FAR
        ).threshold
    names = sorted(faceset.names)
    if strangers is None:
        strangers = names[(len(names) + 1) // 2 :]
    stranger_labels = [faceset.names.index(name) for name in strangers if name in faceset.names]
    # Sorted names -> labels in the same order, so "the first half" means the same people
    # whatever order the set was read in.
    order = np.argsort([faceset.names[label] for label in faceset.labels], kind="stable")
    door = door_simulation(
        faceset.vectors[order],
        faceset.labels[order],
        stranger_labels,
        enrol=enrol,
        threshold=threshold,
        margin=margin,
    )
    report = {
        "model_id": faceset.model_id,
        "people": len(set(faceset.labels.tolist())),
        "photos_used": len(faceset.labels),
        "photos_skipped": len(faceset.skipped),
        "skipped": list(faceset.skipped),
        "pairs": figures.to_dict(),
        "door": door.to_dict(),
    }
    if far is not None:
        report["recommendation"] = recommend_threshold(
            pairs.genuine_distances, pairs.impostor_distances, far
        ).to_dict()
    return report, (pairs.genuine_distances, pairs.impostor_distances)


def summary_lines(report: dict) -> list[str]:
    """The report as a few human lines (the command's default output)."""
    pairs = report["pairs"]
    lines = [
        f"{report.get('dataset', '')}: {report.get('people', '?')} people, "
        f"{report.get('photos_used', '?')} photos used, {report.get('photos_skipped', 0)} "
        f"skipped (no usable face); model {report['model_id']}",
        f"pairs: {pairs['genuine_pairs']:,} genuine, {pairs['impostor_pairs']:,} impostor "
        f"(of {pairs['impostor_pairs_total']:,})",
        f"{pairs['folds']}-fold accuracy {pairs['ten_fold_accuracy']:.4f} +/- "
        f"{pairs['ten_fold_std']:.4f} (balanced, {pairs['balanced_impostor_pairs']:,} impostor "
        f"pairs); AUC {pairs['auc']:.4f}; EER {pairs['eer']:.4f}",
    ]
    for far, row in pairs["tar_at_far"].items():
        lines.append(
            f"TAR @ FAR {far}: {row['tar']:.3f} (threshold {row['threshold']:.4f}, "
            f"{row['impostors_accepted']} impostor pairs under it)"
        )
    door = report.get("door")
    if door:
        lines.append(DoorFigures(**{k: v for k, v in door.items() if k != "tar"}).summary())
    recommendation = report.get("recommendation")
    if recommendation:
        lines.append(Recommendation(**recommendation).summary())
    return lines
