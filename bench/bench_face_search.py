"""How fast ``face-check`` finds the nearest enrolled person among 100,000 embeddings.

The gallery imitates real faces: identity centres and per-photo scatter are drawn from the
between- and within-identity covariances of the 898 real dlib descriptors in
``../shared/reference/dlib_oracle/all_descriptors.npy`` (AT&T, glint, happy_house), so the
spectrum, the norms and the distances are those of dlib's embedding (median nearest-neighbour
distances of 0.4-0.5). Without that file an isotropic Gaussian is used, and the script says so.
Queries are new photos of enrolled people (genuine) and of people not enrolled (impostors).

Printed, all in the same run, milliseconds per query (median and 90th percentile):
1. ours: ``GalleryIndex.nearest``, the exact two nearest people (pruned search, one BLAS thread);
2. the naive NumPy peer: ``np.linalg.norm(gallery - probe, axis=1)`` over the full matrix, then
   the per-person minimum and the two best people;
3. for reference, the textbook expanded form ``|b|² - 2a·b`` over the full matrix (one thread).
and the ratio naive / ours. Every answer of ours is checked against the naive peer's.
Goal (issue 4): well under 5 ms for one query among 100,000. With ``--store`` the gallery is
also written to a temporary face database, one transaction per person as ``face-enroll``
does, and the time ``FaceStore.gallery`` takes to load it back is printed: that is part of a
``face-check`` process's start-up, reported apart from the search.

    PYTHONPATH=. python bench/bench_face_search.py [--rows 100000] [--per-person 5] [--queries 200]
                                                   [--store]
"""

from __future__ import annotations

import argparse
import csv
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from threadpoolctl import ThreadpoolController

from apps.face_access.decision import SEARCH_DIMS, GalleryIndex
from apps.face_access.store import FaceStore

SHARED = Path(os.environ.get("CONVNET_APPS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
ORACLE = SHARED / "reference" / "dlib_oracle"


def face_like_model(rng: np.random.Generator, dims: int = 128):
    """Mean and Cholesky factors of the between- and within-identity covariances."""
    descriptors_path = ORACLE / "all_descriptors.npy"
    if not descriptors_path.is_file():
        print(f"note: {descriptors_path} not found, using an isotropic Gaussian gallery")
        scale = np.eye(dims) * 0.05
        return np.zeros(dims), scale, scale * 0.6
    descriptors = np.load(descriptors_path).astype(np.float64)
    with open(ORACLE / "all_index.csv", newline="") as stream:
        identities = [f"{row['dataset']}/{row['identity']}" for row in csv.DictReader(stream)]
    _, label = np.unique(identities, return_inverse=True)
    centres = np.stack([descriptors[label == i].mean(axis=0) for i in range(label.max() + 1)])
    scatter = descriptors - centres[label]
    ridge = 1e-8 * np.eye(descriptors.shape[1])
    between = np.linalg.cholesky(np.cov(centres.T) + ridge)
    within = np.linalg.cholesky(np.cov(scatter.T) + ridge)
    return descriptors.mean(axis=0), between, within


def timed(search: Callable[[np.ndarray], tuple[int, int]], probes: np.ndarray):
    """Per-query milliseconds and the answers."""
    search(probes[0])  # warm-up
    times, answers = [], []
    for probe in probes:
        start = time.perf_counter()
        answers.append(search(probe))
        times.append((time.perf_counter() - start) * 1e3)
    return np.array(times), answers


def top_two_people(distances: np.ndarray, row_starts: np.ndarray) -> tuple[int, int]:
    """Best and second person from per-row distances of a gallery grouped by person."""
    per_person = np.minimum.reduceat(distances, row_starts)
    best_two = np.argpartition(per_person, 1)[:2]
    return tuple(best_two[np.argsort(per_person[best_two])])  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--per-person", type=int, default=5)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--search-dims", type=int, default=SEARCH_DIMS)
    parser.add_argument("--store", action="store_true", help="also time loading from SQLite")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    mean, between, within = face_like_model(rng)
    people = args.rows // args.per_person
    dims = len(mean)
    centres = mean + rng.standard_normal((people, dims)) @ between.T
    person_of_row = np.repeat(np.arange(people), args.per_person)
    gallery = centres[person_of_row] + rng.standard_normal((len(person_of_row), dims)) @ within.T
    gallery = gallery.astype(np.float32)
    half = args.queries // 2
    genuine = centres[rng.integers(0, people, half)] + rng.standard_normal((half, dims)) @ within.T
    strangers = mean + rng.standard_normal((args.queries - half, dims)) @ between.T
    impostor = strangers + rng.standard_normal((len(strangers), dims)) @ within.T
    probes = np.concatenate([genuine, impostor]).astype(np.float32)

    start = time.perf_counter()
    index = GalleryIndex([str(i) for i in range(people)], gallery, person_of_row, args.search_dims)
    build_ms = (time.perf_counter() - start) * 1e3

    def ours(probe: np.ndarray) -> tuple[int, int]:
        found = index.nearest(probe)
        return found.best, found.second  # type: ignore[return-value]

    row_starts = np.arange(0, len(gallery), args.per_person)
    sq_norms = np.einsum("ij,ij->i", gallery, gallery)

    def naive(probe: np.ndarray) -> tuple[int, int]:
        return top_two_people(np.linalg.norm(gallery - probe, axis=1), row_starts)

    blas = ThreadpoolController()

    def expanded(probe: np.ndarray) -> tuple[int, int]:
        with blas.limit(limits=1, user_api="blas"):
            squared = sq_norms - 2.0 * (gallery @ probe)
        return top_two_people(squared, row_starts)

    our_ms, our_answers = timed(ours, probes)
    naive_ms, naive_answers = timed(naive, probes)
    expanded_ms, _ = timed(expanded, probes)
    examined = [index.nearest(probe).examined for probe in probes]
    mismatches = sum(a != b for a, b in zip(our_answers, naive_answers, strict=True))

    print(
        f"gallery: {len(gallery):,} embeddings of {people:,} people, {dims}-d float32; "
        f"{len(probes)} queries ({half} genuine, {len(probes) - half} impostor)"
    )
    print(f"index build: {build_ms:.1f} ms (once per process); search dims {args.search_dims}")
    print(f"rows checked exactly per query: median {np.median(examined):.0f}, max {max(examined)}")
    for label, times in (
        ("ours (pruned exact search)", our_ms),
        ("naive peer (np.linalg.norm, full matrix)", naive_ms),
        ("textbook expanded form, full matrix, 1 thread", expanded_ms),
    ):
        print(
            f"{label:48s} median {np.median(times):7.3f} ms  p90 {np.percentile(times, 90):7.3f} ms"
        )
    print(f"ratio naive / ours (median): {np.median(naive_ms) / np.median(our_ms):.1f}x")
    print(f"answers differing from the naive peer (best, second person): {mismatches}")
    if args.store:
        time_store_round_trip(gallery, person_of_row)


def time_store_round_trip(gallery: np.ndarray, person_of_row: np.ndarray) -> None:
    """Enrol every person into a fresh database, then time loading the gallery back."""
    with tempfile.TemporaryDirectory() as folder, FaceStore(Path(folder) / "faces.db") as store:
        start = time.perf_counter()
        for person in np.unique(person_of_row):
            store.enroll(f"person {person:07d}", gallery[person_of_row == person], "bench")
        enrol_s = time.perf_counter() - start
        start = time.perf_counter()
        names, matrix, _ = store.gallery("bench")
        load_ms = (time.perf_counter() - start) * 1e3
    assert len(names) == len(np.unique(person_of_row)) and np.array_equal(matrix, gallery)
    print(
        f"store: enrolling {len(names):,} people took {enrol_s:.1f} s "
        f"({enrol_s / len(names) * 1e3:.2f} ms per person and transaction); "
        f"loading the gallery back: {load_ms:.0f} ms"
    )


if __name__ == "__main__":
    main()
