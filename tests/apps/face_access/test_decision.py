"""Door decisions on hand-made vectors, exact search against brute force, anti-flicker, lockout."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from apps.face_access.decision import (
    ConsecutiveMatch,
    Decision,
    DenialLockout,
    GalleryIndex,
    decide,
)


def unit(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


@pytest.fixture
def two_people() -> GalleryIndex:
    """ada at (0,0) and (0,1) [two photos], bob at (3,0)."""
    vectors = np.stack([unit(0, 0), unit(0, 1), unit(3, 0)])
    return GalleryIndex(["ada", "bob"], vectors, np.array([0, 0, 1]))


def test_granted_with_distances_to_both_people(two_people):
    decision = decide(two_people, unit(0.3, 0.4), threshold=0.6, margin=0.1)
    assert decision.granted
    assert decision.name == "ada"
    assert decision.distance == pytest.approx(0.5)  # nearest of ada's two photos: 3-4-5
    assert decision.second_name == "bob"
    assert decision.second_distance == pytest.approx(np.hypot(2.7, 0.4), rel=1e-6)
    assert decision.threshold == 0.6


def test_per_person_distance_is_the_nearest_of_their_photos(two_people):
    near_second_photo = decide(two_people, unit(0, 1.2), threshold=0.6, margin=0.1)
    assert near_second_photo.granted and near_second_photo.name == "ada"
    assert near_second_photo.distance == pytest.approx(0.2)


def test_denied_when_too_far_but_names_the_closest(two_people):
    decision = decide(two_people, unit(1.5, -0.3), threshold=0.6, margin=0.1)
    assert not decision.granted
    assert decision.name == "ada"
    assert decision.distance == pytest.approx(np.hypot(1.5, 0.3), rel=1e-6)
    assert "threshold" in decision.reason


def test_threshold_is_strict(two_people):
    assert not decide(two_people, unit(0.3, -0.4), threshold=0.5, margin=0.0).granted
    assert decide(two_people, unit(0.3, -0.4), threshold=0.5001, margin=0.0).granted


def test_denied_by_margin_when_two_people_are_almost_equally_close():
    vectors = np.stack([unit(0, 0), unit(1, 0)])
    index = GalleryIndex(["ada", "bob"], vectors, np.array([0, 1]))
    probe = unit(0.48, 0.0)  # ada 0.48, bob 0.52: both under the threshold
    decision = decide(index, probe, threshold=0.6, margin=0.1)
    assert not decision.granted
    assert (decision.name, decision.second_name) == ("ada", "bob")
    assert decision.second_distance - decision.distance == pytest.approx(0.04, abs=1e-6)
    assert "ambiguous" in decision.reason
    assert decide(index, probe, threshold=0.6, margin=0.03).granted


def test_margin_rule_never_grants_the_wrong_person():
    """Two people 0.8 apart, probes scattered up to 0.58 from their true person, so some
    cross the midpoint. A plain nearest-under-threshold rule grants some of them as the
    wrong person; with a margin m no probe within (0.8 + m) / 2 of its person can be
    (it would need d_true - d_wrong >= m with d_true + d_wrong >= 0.8)."""
    rng = np.random.default_rng(0)
    ada, bob = unit(0, 0, 0), unit(0.8, 0, 0)
    index = GalleryIndex(["ada", "bob"], np.stack([ada, bob]), np.array([0, 1]))
    wrong_without_margin = 0
    for _ in range(1000):
        truth = int(rng.integers(2))
        direction = rng.normal(size=3)
        offset = direction / np.linalg.norm(direction) * rng.uniform(0, 0.58)
        probe = (ada, bob)[truth] + offset.astype(np.float32)
        plain = decide(index, probe, threshold=0.6, margin=0.0)
        wrong_without_margin += plain.granted and plain.name != ("ada", "bob")[truth]
        guarded = decide(index, probe, threshold=0.6, margin=0.4)
        assert not guarded.granted or guarded.name == ("ada", "bob")[truth]
    assert wrong_without_margin > 0  # the margin had something to prevent


def test_single_person_has_no_second_and_no_margin_to_fail():
    index = GalleryIndex(["ada"], np.stack([unit(0, 0), unit(0, 1)]), np.array([0, 0]))
    decision = decide(index, unit(0.1, 0), threshold=0.5, margin=0.2)
    assert decision.granted and decision.second_name is None and decision.second_distance is None


def test_empty_gallery_denies():
    index = GalleryIndex([], np.zeros((0, 128), np.float32), np.zeros(0, np.int64))
    decision = decide(index, np.zeros(128, np.float32), threshold=0.5, margin=0.05)
    assert decision == Decision(
        False, None, None, None, None, decision.threshold, "no one is enrolled"
    )


def test_probe_of_the_wrong_size_is_rejected(two_people):
    with pytest.raises(ValueError, match="3 values"):
        two_people.nearest(unit(0, 0, 0))


def brute_force_top_two(vectors, person_of_row, probe):
    distances = np.linalg.norm(vectors.astype(np.float64) - probe, axis=1)
    per_person = {}
    for person, distance in zip(person_of_row, distances, strict=True):
        per_person[person] = min(per_person.get(person, np.inf), distance)
    ranked = sorted(per_person.items(), key=lambda item: item[1])
    return ranked[0], ranked[1] if len(ranked) > 1 else (None, np.inf)


@pytest.mark.parametrize(
    "kind", ["clustered", "isotropic", "low_rank", "rows_not_grouped", "one_dominant_person"]
)
def test_pruned_search_equals_brute_force(kind):
    """The lower-bound pruning is exact: same two people and distances as a full search,
    whether the bound prunes well (clustered, low rank) or not (isotropic, the fallback)."""
    rng = np.random.default_rng(1)
    people, dims = 300, 32
    centres = rng.normal(0, 1, (people, dims))
    person_of_row = np.repeat(np.arange(people), 4)
    if kind == "low_rank":  # all variance inside the kept subspace: remainders are ~0
        centres[:, 8:] = 0
    if kind == "isotropic":
        vectors = rng.normal(0, 1, (len(person_of_row), dims))
    else:
        vectors = centres[person_of_row] + rng.normal(0, 0.2, (len(person_of_row), dims))
        if kind == "low_rank":
            vectors[:, 8:] = 0
    if kind == "rows_not_grouped":
        person_of_row = rng.permutation(person_of_row)
    if kind == "one_dominant_person":  # one person with many photos sets k
        person_of_row[:200] = 0
    vectors = vectors.astype(np.float32)
    index = GalleryIndex([str(i) for i in range(people)], vectors, person_of_row, search_dims=8)
    for _ in range(40):
        probe = (vectors[rng.integers(len(vectors))] + rng.normal(0, 0.3, dims)).astype(np.float32)
        if kind == "low_rank":
            probe[8:] = 0
        found = index.nearest(probe)
        (best, best_d), (second, second_d) = brute_force_top_two(vectors, person_of_row, probe)
        assert (found.best, found.second) == (best, second)
        assert found.best_distance == pytest.approx(best_d, rel=1e-5, abs=1e-6)
        assert found.second_distance == pytest.approx(second_d, rel=1e-5, abs=1e-6)


def test_pruning_checks_few_rows_on_clustered_data():
    rng = np.random.default_rng(2)
    centres = rng.normal(0, 1, (2000, 64)) * np.linspace(1, 0.05, 64)  # a decaying spectrum
    person_of_row = np.repeat(np.arange(2000), 5)
    vectors = (centres[person_of_row] + rng.normal(0, 0.05, (10000, 64))).astype(np.float32)
    index = GalleryIndex([str(i) for i in range(2000)], vectors, person_of_row, search_dims=16)
    probe = vectors[123] + np.float32(0.01)
    assert index.nearest(probe).examined < 500


def test_oracle_door_scenario_with_real_dlib_descriptors(reference_dir):
    """dlib's own descriptors, glint door scenario (README of dlib_oracle): at threshold
    0.55 its nearest-neighbour rule grants one probe to the wrong person; with a margin of
    0.05 between the best two people no probe is granted as someone else."""
    oracle = reference_dir / "dlib_oracle"
    descriptors = np.load(oracle / "all_descriptors.npy")
    with open(oracle / "all_index.csv", newline="") as stream:
        rows = [row for row in csv.DictReader(stream) if row["dataset"] == "glint"]
    by_identity: dict[str, list[int]] = {}
    for row in sorted(rows, key=lambda row: row["source"]):
        by_identity.setdefault(row["identity"], []).append(int(row["row"]))
    names = sorted(by_identity)
    enrolled = names[: len(names) // 2]
    gallery_rows = [r for name in enrolled for r in by_identity[name][:5]]
    person_of_row = np.repeat(np.arange(len(enrolled)), 5)
    index = GalleryIndex(enrolled, descriptors[gallery_rows], person_of_row)
    wrong = {0.0: 0, 0.05: 0}
    for name in enrolled:
        for row in by_identity[name][5:]:
            for margin in wrong:
                decision = decide(index, descriptors[row], threshold=0.55, margin=margin)
                wrong[margin] += decision.granted and decision.name != name
    assert wrong == {0.0: 1, 0.05: 0}


def granted(name: str) -> Decision:
    return Decision(True, name, 0.3, None, None, 0.5, "")


def denied(name: str) -> Decision:
    return Decision(False, name, 0.7, None, None, 0.5, "")


def outcomes(gate: ConsecutiveMatch, frames: list[Decision | None]) -> list:
    """What the gate reports per frame: None, or (granted, name) of the settled decision."""
    return [None if d is None else (d.granted, d.name) for d in map(gate.update, frames)]


def test_consecutive_match_opens_after_k_frames_of_one_person():
    gate = ConsecutiveMatch(3)
    frames = [granted("ada"), granted("ada"), granted("ada"), granted("ada")]
    assert outcomes(gate, frames) == [None, None, (True, "ada"), None]


def test_consecutive_match_restarts_on_any_interruption():
    gate = ConsecutiveMatch(2)
    frames = [
        granted("ada"), None,  # no face
        granted("ada"), denied("ada"),
        granted("ada"), granted("bob"),  # another person
        granted("bob"),
    ]  # fmt: skip
    assert outcomes(gate, frames) == [None] * 6 + [(True, "bob")]


def test_consecutive_denials_are_reported_once_per_run_whoever_was_closest():
    gate = ConsecutiveMatch(2)
    frames = [denied("ada"), denied("bob"), denied("bob"), granted("ada"), denied("ada")]
    assert outcomes(gate, frames) == [None, (False, "bob"), None, None, None]


def test_consecutive_match_of_one_frame_opens_at_once():
    assert ConsecutiveMatch(1).update(granted("ada")) == granted("ada")
    with pytest.raises(ValueError):
        ConsecutiveMatch(0)


START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return START + timedelta(seconds=seconds)


def test_lockout_after_n_denials_within_the_window_until_the_cooldown_ends():
    lockout = DenialLockout(max_denials=3, window_s=60, cooldown_s=120)
    denials = [at(0), at(20), at(50)]
    assert lockout.refused_until(denials[:2], now=at(51)) is None
    assert lockout.refused_until(denials, now=at(51)) == at(170)
    assert lockout.refused_until(denials, now=at(169.9)) == at(170)
    assert lockout.refused_until(denials, now=at(170)) is None


def test_lockout_ignores_denials_spread_wider_than_the_window():
    lockout = DenialLockout(max_denials=3, window_s=60, cooldown_s=120)
    assert lockout.refused_until([at(0), at(40), at(61)], now=at(62)) is None
    # A later run of three inside one window locks again, whatever came before.
    assert lockout.refused_until([at(0), at(40), at(61), at(90)], now=at(91)) == at(210)


def test_lockout_lookback_covers_window_and_cooldown_and_zero_disables():
    assert DenialLockout(5, 60, 300).lookback_s == 360
    assert DenialLockout(max_denials=0).refused_until([at(0)] * 10, now=at(1)) is None
