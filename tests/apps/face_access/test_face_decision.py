"""The door rule on hand-made vectors, and the grouped search against brute force."""

from __future__ import annotations

import numpy as np

from apps.face_access.decision import Gallery


def _unit(*components: float) -> np.ndarray:
    vector = np.zeros(128, np.float32)
    vector[: len(components)] = components
    return vector / np.linalg.norm(vector)


def test_grant_deny_and_ambiguity_by_hand():
    alice, bob = _unit(1, 0), _unit(0, 1)
    gallery = Gallery(["bob", "alice"], np.stack([bob, alice]))
    assert gallery.people == ["alice", "bob"]

    near_alice = _unit(1, 0.1)  # distance to alice: 2 sin(atan(0.1) / 2) = 0.0998
    decision = gallery.decide(near_alice, threshold=0.33, margin=0.05)
    assert decision.granted and decision.name == "alice"
    assert abs(decision.distance - 2 * np.sin(np.arctan(0.1) / 2)) < 1e-6

    far = _unit(1, 1, 2)  # 1.088 from both
    decision = gallery.decide(far, threshold=0.33)
    assert not decision.granted and decision.reason == "too far"

    between = _unit(1, 0.9)  # alice 0.717, bob 0.814: 0.097 apart
    loose = gallery.decide(between, threshold=0.8, margin=0.1)
    assert not loose.granted and loose.reason == "ambiguous" and loose.name == "alice"
    assert gallery.decide(between, threshold=0.8, margin=0.05).granted


def test_nobody_enrolled():
    decision = Gallery([], np.zeros((0, 128))).decide(_unit(1))
    assert not decision.granted and decision.reason == "nobody enrolled"


def test_grouped_search_matches_brute_force():
    rng = np.random.default_rng(0)
    names = [f"p{i}" for i in rng.integers(0, 50, 2000)]
    vectors = rng.normal(size=(2000, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    probe = vectors[7] + rng.normal(0, 0.02, 128).astype(np.float32)
    probe /= np.linalg.norm(probe)
    gallery = Gallery(names, vectors)
    distances = np.linalg.norm(vectors - probe, axis=1)
    expected = [distances[[n == person for n in names]].min() for person in gallery.people]
    np.testing.assert_allclose(gallery.person_distances(probe), expected, atol=1e-5)
    assert gallery.decide(probe, threshold=0.5).name == names[7]
