"""Does this face open the door? Matching, the margin rule, anti-flicker and lockout.

Pure logic on NumPy arrays: no files, no clock, no database. The commands feed
it the gallery from the store and the current time, which keeps every rule
testable with hand-made vectors and a fake clock.

The rule (``decide``): find the nearest enrolled PERSON to the probe embedding,
where a person's distance is the minimum Euclidean distance over their
enrolment embeddings, and the second-nearest person. Grant only if

    best < threshold   and   second - best >= margin.

Why the minimum over a person's embeddings rather than the mean of the k
nearest: enrolment photos deliberately cover different poses and lighting, and
a probe resembles the one enrolment condition it was taken in; a mean would
punish exactly the people enrolled most carefully, and k would have to be no
more than the smallest enrolment. The minimum is also dlib's own nearest-
neighbour rule (the anchor in ``shared/reference/dlib_oracle``) and allows the
exact pruned search below. Its weakness, one bad enrolment photo attracting
impostors, is what the margin rule and the enrolment checks guard against.

Why the margin: a probe almost equally close to two enrolled people is
ambiguous, and granting it risks opening for the wrong person (who is then
logged under someone else's name). Denying it costs the genuine user one more
try.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from threadpoolctl import ThreadpoolController

# The threshold and margin depend on the embedder: see ``EmbedderSpec`` in ``models``.
# Door lockout: this many denials within the window refuse checks for the cooldown.
DEFAULT_MAX_DENIALS = 5
DEFAULT_WINDOW_SECONDS = 60.0
DEFAULT_COOLDOWN_SECONDS = 300.0
# Camera mode: frames in a row that must agree before the door acts.
DEFAULT_CONSECUTIVE_FRAMES = 3

# Dimensions of the principal subspace used for the search's lower bounds. Of the
# 128 dlib dimensions, 32 carry 84 % of the variance of real faces (measured on the
# 898 oracle descriptors): the bound then leaves about 300 of 100,000 rows to check
# exactly, while reading a quarter of the matrix (16 dims leave thousands; see
# bench/bench_face_search.py --search-dims).
SEARCH_DIMS = 32
# Rows used to find the principal axes, and rows projected at a time when building.
_AXES_SAMPLE_ROWS = 8192
_CHUNK_ROWS = 8192
# Above this share of rows surviving the bound, the pruned search saves nothing and
# one exact pass over the full matrix is cheaper.
_MAX_CANDIDATE_SHARE = 0.25


@dataclass(frozen=True)
class Decision:
    """The answer for one probe. ``name`` is the closest person even when denied."""

    granted: bool
    name: str | None
    distance: float | None
    second_name: str | None
    second_distance: float | None
    threshold: float
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Neighbours:
    """The two nearest distinct people (indices into the gallery's names) and their distances.

    A missing person has index None and distance infinity. ``examined`` counts
    the rows whose exact distance was computed, to show how much the bound pruned.
    """

    best: int | None
    best_distance: float
    second: int | None
    second_distance: float
    examined: int


class GalleryIndex:
    """Exact nearest-person search over all enrolled embeddings of one model.

    A search for one probe among 100,000 embeddings must take well under 5 ms on
    a small CPU. The textbook vectorised form (``|a|² + |b|² - 2a·b`` with the
    norms precomputed, then ``argpartition``) reads the whole 51 MB float32
    matrix per query (about 2.5 ms here on one core). So:

    1. At build time the gallery is centred and projected onto its principal
       axes, an orthonormal change of basis that leaves distances unchanged.
       Only the first ``search_dims`` coordinates are kept, in their own
       column-major matrix (a matrix-vector product over few columns runs twice
       as fast that way), plus one more column: each row's norm in all the
       remaining coordinates.
    2. Per query, the distance in that (``search_dims`` + 1)-d space is a lower
       bound of the true distance (Pythagoras on the kept axes, the reverse
       triangle inequality on the rest). It reads a quarter of the data.
    3. Exact distances of the rows with the smallest bounds give an upper bound
       on the second-nearest person's distance; a row whose lower bound is above
       it can change neither of the two nearest people, so only the rows below
       it are computed exactly.

    The answer is that of a full exact search (tested against one); when the
    data has no dominant subspace and the bound prunes too little, one exact
    pass over the full matrix is made instead. BLAS runs on one thread during a
    search: on a busy machine a two-thread matrix-vector product waits for the
    other core and takes several times longer.
    """

    def __init__(
        self,
        names: Sequence[str],
        vectors: np.ndarray,
        person_of_row: np.ndarray,
        search_dims: int = SEARCH_DIMS,
    ) -> None:
        self.names = list(names)
        self._vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self._person = np.asarray(person_of_row, dtype=np.int64)
        if self._vectors.ndim != 2 or len(self._person) != len(self._vectors):
            raise ValueError(
                f"gallery of shape {self._vectors.shape} with {len(self._person)} person indices"
            )
        if len(self._person) and not (0 <= self._person.min() <= self._person.max() < len(names)):
            raise ValueError("person index out of range of the names")
        rows, self.dimension = self._vectors.shape
        self._max_rows_of_a_person = int(np.bincount(self._person).max()) if rows else 0
        if rows:
            with _one_blas_thread():
                self._build_bounds(min(search_dims, self.dimension))

    def _build_bounds(self, search_dims: int) -> None:
        """Principal axes from a sample, then the (N, search_dims + 1) bound matrix.

        Any orthonormal basis keeps the bound valid, so the axes may come from a
        sample (cheap for a large gallery). The norm of the remainder is taken of
        the remainder vector itself, not as a difference of squared norms, whose
        float32 cancellation could break the bound for rows that lie almost
        entirely in the kept subspace.
        """
        rows = len(self._vectors)
        sample = self._vectors[:: max(1, rows // _AXES_SAMPLE_ROWS)].astype(np.float64)
        mean = sample.mean(axis=0)
        _, axes = np.linalg.eigh(np.cov(sample, rowvar=False, bias=True))  # ascending variance
        self._mean = mean.astype(np.float32)
        self._axes = np.ascontiguousarray(axes[:, ::-1][:, :search_dims], dtype=np.float32)
        bounds = np.empty((rows, search_dims + 1), dtype=np.float32, order="F")
        for start in range(0, rows, _CHUNK_ROWS):
            stop = min(start + _CHUNK_ROWS, rows)
            bounds[start:stop, :search_dims], bounds[start:stop, search_dims] = self._project(
                self._vectors[start:stop]
            )
        self._bounds = bounds
        self._bounds_sq = np.einsum("ij,ij->i", bounds, bounds)
        self._bounds_sq_max = float(self._bounds_sq.max())
        self._sq_norms = np.einsum("ij,ij->i", self._vectors, self._vectors)
        self._sq_norms_max = float(self._sq_norms.max())

    def _project(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coordinates on the kept axes and the norm of what is left, for rows of ``vectors``."""
        centred = vectors - self._mean
        kept = centred @ self._axes
        remainder = centred - kept @ self._axes.T
        return kept, np.sqrt(np.einsum("ij,ij->i", remainder, remainder))

    def __len__(self) -> int:
        return len(self._vectors)

    def nearest(self, query: np.ndarray) -> Neighbours:
        """The two nearest distinct people to ``query`` (exact, see the class docstring)."""
        probe = np.asarray(query, dtype=np.float32).reshape(-1)
        if len(self._vectors) and probe.size != self.dimension:
            raise ValueError(f"probe has {probe.size} values, the gallery {self.dimension}")
        if not np.isfinite(probe).all():
            raise ValueError("probe embedding contains NaN or infinity")
        if len(self._vectors) == 0:
            return Neighbours(None, math.inf, None, math.inf, 0)
        with _one_blas_thread():
            kept, rest = self._project(probe[np.newaxis])
            point = np.append(kept[0], rest[0])
            lower = _squared_distances(self._bounds, self._bounds_sq, self._bounds_sq_max, point)
            found = self._refine(probe, lower, int(_MAX_CANDIDATE_SHARE * len(self)))
            if found is None:
                squared = _squared_distances(
                    self._vectors, self._sq_norms, self._sq_norms_max, probe
                )
                found = self._refine(probe, squared, len(self))
        return found

    def _refine(
        self, probe: np.ndarray, lower: np.ndarray, max_candidates: int
    ) -> Neighbours | None:
        """Exact two nearest people given lower bounds of every row's squared distance.

        The k smallest bounds, with k one more than the largest enrolment of any
        person, always include two people (when the gallery has two); their exact
        distances bound the answer, and only rows under that bound can be in it.
        Returns None when more than ``max_candidates`` rows would need checking.
        """
        rows = len(lower)
        first_count = min(rows, self._max_rows_of_a_person + 1)
        first = (
            np.argpartition(lower, first_count - 1)[:first_count]
            if first_count < rows
            else np.arange(rows)
        )
        provisional = self._exact(probe, first)
        # With one person enrolled there is no second: bound the best instead.
        bound = (
            provisional.best_distance if provisional.second is None else provisional.second_distance
        ) ** 2
        candidates = np.flatnonzero(lower <= bound)
        if len(candidates) > max_candidates:
            return None
        return self._exact(probe, candidates)

    def _exact(self, probe: np.ndarray, rows: np.ndarray) -> Neighbours:
        """Exact distances of ``rows`` (a difference, not the expanded form, for precision)."""
        difference = self._vectors[rows] - probe
        squared = np.einsum("ij,ij->i", difference, difference)
        order = np.argsort(squared, kind="stable")
        persons = self._person[rows][order]
        best = int(persons[0])
        best_distance = math.sqrt(squared[order[0]])
        others = np.flatnonzero(persons != best)
        if others.size == 0:
            return Neighbours(best, best_distance, None, math.inf, len(rows))
        second_distance = math.sqrt(squared[order[others[0]]])
        return Neighbours(best, best_distance, int(persons[others[0]]), second_distance, len(rows))


def _squared_distances(
    matrix: np.ndarray, sq_norms: np.ndarray, sq_norms_max: float, point: np.ndarray
) -> np.ndarray:
    """Every row's squared distance to ``point``, by the expanded form, minus its rounding error.

    The expanded form loses a little to float32 cancellation; subtracting a
    generous allowance keeps each value a lower bound of the true one, which is
    all the pruning needs (exact distances are recomputed for the survivors).
    """
    point_sq = float(point @ point)
    squared = matrix @ point
    squared *= -2.0
    squared += sq_norms
    squared += point_sq - 1e-4 * (sq_norms_max + point_sq) - 1e-6
    return squared


@functools.cache
def _blas_threads() -> ThreadpoolController:
    return ThreadpoolController()


def _one_blas_thread():
    return _blas_threads().limit(limits=1, user_api="blas")


def decide(
    index: GalleryIndex,
    probe: np.ndarray,
    threshold: float,
    margin: float,
) -> Decision:
    """Grant or deny one probe embedding against the gallery (rule in the module docstring)."""
    found = index.nearest(probe)
    if found.best is None:
        return Decision(False, None, None, None, None, threshold, "no one is enrolled")
    name = index.names[found.best]
    second_name = None if found.second is None else index.names[found.second]
    second_distance = None if found.second is None else found.second_distance
    distance = found.best_distance
    if distance >= threshold:
        granted = False
        reason = f"closest person {name} at {distance:.3f} is not under the threshold {threshold:g}"
    elif found.second_distance - distance < margin:
        granted = False
        reason = (
            f"ambiguous: {name} at {distance:.3f} and {second_name} at {second_distance:.3f} "
            f"are closer than the margin {margin:g}"
        )
    else:
        granted = True
        reason = f"{name} at {distance:.3f} < {threshold:g}" + (
            "" if second_name is None else f", next {second_name} at {second_distance:.3f}"
        )
    return Decision(granted, name, distance, second_name, second_distance, threshold, reason)


class ConsecutiveMatch:
    """Anti-flicker for camera mode: an outcome counts only once K consecutive frames agree.

    A single frame can match by chance (motion blur, a half-turned head); the
    same person granted in K frames in a row cannot. Frames agree when they
    grant the same person, or when they are all denials (whoever was closest),
    so a stranger at the door is reported, and audited, once per K frames
    rather than on every frame, which would trip the denial lockout within a
    second. Anything else (no face, another person, a grant after denials)
    restarts the count, and so does every reported outcome: holding a face in
    front of the camera does not fire the relay on every frame.
    """

    def __init__(self, frames: int) -> None:
        if frames < 1:
            raise ValueError(f"frames must be at least 1, not {frames}")
        self.frames = frames
        self._outcome: tuple[bool, str | None] | None = None
        self._count = 0

    def update(self, decision: Decision | None) -> Decision | None:
        """Feed one frame's decision (None: no face); return it when K frames in a row agree."""
        if decision is None:
            self._outcome, self._count = None, 0
            return None
        outcome = (True, decision.name) if decision.granted else (False, None)
        self._count = self._count + 1 if outcome == self._outcome else 1
        self._outcome = outcome
        if self._count < self.frames:
            return None
        self._outcome, self._count = None, 0
        return decision


class DenialLockout:
    """After ``max_denials`` denials within ``window_s`` seconds, refuse checks for ``cooldown_s``.

    It slows down someone trying photo after photo at the door. The state is
    the denial times themselves, which the store keeps in its audit log
    (``FaceStore.recent_denials(lockout.lookback_s)``), so a lockout holds across
    separate ``face-check`` processes. Refused checks are audited as "refused",
    not "denied", so they do not extend the lockout: the rightful user can get
    in once it ends. ``max_denials=0`` disables the lockout.
    """

    def __init__(
        self,
        max_denials: int = DEFAULT_MAX_DENIALS,
        window_s: float = DEFAULT_WINDOW_SECONDS,
        cooldown_s: float = DEFAULT_COOLDOWN_SECONDS,
    ):
        if max_denials < 0 or window_s <= 0 or cooldown_s < 0:
            raise ValueError("max_denials >= 0, window_s > 0 and cooldown_s >= 0 are required")
        self.max_denials = max_denials
        self.window = timedelta(seconds=window_s)
        self.cooldown = timedelta(seconds=cooldown_s)

    @property
    def lookback_s(self) -> float:
        """How far back denials can still matter: a run within the window, then the cooldown."""
        return (self.window + self.cooldown).total_seconds()

    def refused_until(self, denial_times: Sequence[datetime], now: datetime) -> datetime | None:
        """The end of the current lockout, or None when a check may go ahead now."""
        if self.max_denials == 0:
            return None
        times = sorted(denial_times)
        run = self.max_denials - 1
        ends = [
            times[last] + self.cooldown
            for last in range(run, len(times))
            if times[last] - times[last - run] <= self.window
        ]
        until = max(ends, default=None)
        return until if until is not None and until > now else None
