"""Verification figures: dlib's own oracle figures reproduced from dlib's own descriptors,
hand-made door cases, the recommended threshold and its confidence, the ROC plot."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

from apps.face_access.verification import (
    door_simulation,
    faceset_report,
    plot_roc,
    recommend_threshold,
    roc_points,
    summary_lines,
    verification_pairs,
)


def _oracle_set(reference_dir, dataset: str):
    """dlib's own descriptors of one oracle set, and the oracle's published figures."""
    oracle = reference_dir / "dlib_oracle"
    with (oracle / "all_index.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["dataset"] == dataset]
    names = sorted({row["identity"] for row in rows})
    descriptors = np.load(oracle / "all_descriptors.npy")[[int(row["row"]) for row in rows]]
    labels = np.array([names.index(row["identity"]) for row in rows])
    faceset = SimpleNamespace(
        vectors=descriptors, labels=labels, names=names, skipped=[], model_id="dlib-own"
    )
    return faceset, json.loads((oracle / "figures.json").read_text())[dataset]


# The oracle README's door table (dlib's pipeline, enrol 5, nearest descriptor, no margin):
# (set, threshold) -> (TAR, wrong person, impostors granted).
ORACLE_DOOR = {
    ("att", 0.45): (0.960, 1, 0),
    ("att", 0.5): (0.960, 2, 5),
    ("glint", 0.5): (0.806, 0, 1),
}


@pytest.mark.parametrize(("dataset", "threshold"), list(ORACLE_DOOR))
def test_reproduces_dlib_oracle_figures_from_its_descriptors(reference_dir, dataset, threshold):
    """AT&T and glint (glint only here: dlib's published figures, as issue 8 names it)."""
    faceset, expected = _oracle_set(reference_dir, dataset)
    report, (genuine, impostor) = faceset_report(
        faceset, enrol=5, threshold=threshold, margin=0.0, far=1e-3
    )
    pairs = report["pairs"]
    assert pairs["genuine_pairs"] == expected["n_genuine"] == len(genuine)
    assert pairs["impostor_pairs"] == expected["n_impostor_all"] == len(impostor)
    assert pairs["ten_fold_accuracy"] == pytest.approx(expected["cv10_acc_mean"], abs=0.01)
    for far in ("0.01", "0.001", "0.0001"):
        oracle = expected[f"TAR@FAR={far}_all"]
        row = pairs["tar_at_far"][f"{float(far):g}"]
        assert row["tar"] == pytest.approx(oracle["TAR"], abs=0.01)
        assert row["impostors_accepted"] == oracle["impostors_accepted"]
    tar, wrong, impostors = ORACLE_DOOR[(dataset, threshold)]
    door = report["door"]
    assert door["tar"] == pytest.approx(tar, abs=0.005)
    assert (door["wrong_person"], door["impostors_granted"]) == (wrong, impostors)
    assert door["impostor_probes"] == {"att": 200, "glint": 240}[dataset]
    recommended = report["recommendation"]
    assert recommended["threshold"] == pytest.approx(expected["TAR@FAR=0.001_all"]["thr"])
    assert (
        recommended["far_upper_bound"]
        > 1e-3
        > recommended["impostors_accepted"] / len(impostor) - 1e-12
    )
    assert json.loads(json.dumps(report))["model_id"] == "dlib-own"  # plain data
    assert any(line.startswith("TAR @ FAR 0.001") for line in summary_lines(report))


LABELS = np.repeat(np.arange(4), 3)  # four people, three photos each


def test_door_simulation_counts_right_wrong_and_impostors():
    vectors = np.eye(4, dtype=np.float32)[LABELS]
    # Person 1's last photo looks exactly like person 0; person 3 (a stranger) like person 2.
    vectors[5] = vectors[0]
    vectors[9:] = vectors[6]
    figures = door_simulation(vectors, LABELS, strangers=[3], enrol=1, threshold=0.5, margin=0)
    assert (figures.enrolled_people, figures.stranger_people) == (3, 1)
    assert (figures.genuine_probes, figures.impostor_probes) == (6, 3)
    assert (figures.right_person, figures.wrong_person, figures.impostors_granted) == (5, 1, 3)
    assert figures.nearest_impostor == 0
    strict = door_simulation(vectors, LABELS, strangers=[3], enrol=1, threshold=0.0, margin=0)
    assert strict.right_person == strict.impostors_granted == 0


def test_pairs_and_recommendation_on_a_known_layout():
    vectors = np.eye(4, dtype=np.float32)[LABELS]
    pairs = verification_pairs(vectors, LABELS)
    assert len(pairs.genuine) == 4 * 3 and len(pairs.impostor) == 66 - 12
    assert np.all(pairs.genuine_distances == 0)
    np.testing.assert_allclose(pairs.impostor_distances, np.sqrt(2))
    sampled = verification_pairs(vectors, LABELS, max_impostor_pairs=10, seed=3)
    assert len(sampled.impostor) == 10 and sampled.impostor_pairs_total == 54
    assert np.all(LABELS[sampled.impostor[:, 0]] != LABELS[sampled.impostor[:, 1]])
    # 54 impostor pairs cannot support FAR 1e-3: the threshold is the smallest impostor
    # distance and the recommendation says how little it rests on.
    advice = recommend_threshold(pairs.genuine_distances, pairs.impostor_distances, far=1e-3)
    assert advice.threshold == pytest.approx(np.sqrt(2)) and advice.tar == 1.0
    assert advice.impostors_accepted == 0
    assert advice.far_upper_bound == pytest.approx(1 - 0.025 ** (1 / 54), rel=1e-6)
    assert advice.warnings and "10,000 impostor pairs" in advice.warnings[0]
    assert advice.to_dict()["threshold_low"] is None  # too few pairs to bound it below
    with pytest.raises(ValueError, match="NaN"):
        verification_pairs(np.full((2, 3), np.nan), [0, 1])


def test_roc_plot_is_a_png(tmp_path):
    rng = np.random.default_rng(0)
    genuine, impostor = rng.normal(0.3, 0.1, 200), rng.normal(0.8, 0.1, 5000)
    far, tar = roc_points(genuine, impostor)
    assert far[0] == tar[0] == 0 and far[-1] == tar[-1] == 1
    plot_roc(tmp_path / "roc.png", {"model": (far, tar)}, "test")
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
