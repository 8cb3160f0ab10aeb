"""The enrolment rule's distance limit: the embedder's own factor times the door's threshold."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from apps.face_access.access import EnrolReport, add_faces, enrolment_conflicts
from apps.face_access.evaluate import enrolment_cases
from apps.face_access.models import SFACE, SPECS
from apps.face_access.store import FaceStore
from shared.errors import InputError

MODEL = SFACE.model_id


def at_distance(distance: float) -> np.ndarray:
    """A unit vector ``distance`` away from the first axis (unit vectors: 2 sin(angle / 2))."""
    angle = 2 * math.asin(distance / 2)
    vector = np.zeros(128, np.float32)
    vector[:2] = math.cos(angle), math.sin(angle)
    return vector


@pytest.fixture
def store(tmp_path):
    with FaceStore(tmp_path / "faces.db") as store:
        store.enroll("ada", at_distance(0.0)[None], MODEL)
        yield store


def further_photo() -> EnrolReport:
    return EnrolReport(
        "ada", ["ada4.jpg"], vectors=[at_distance(1.2)], scores=[0.9], digests=["ab" * 32]
    )


def test_a_photo_farther_than_factor_times_threshold_is_refused(store):
    assert enrolment_conflicts(store, further_photo(), MODEL, 1.0, 1.25) == []
    assert enrolment_conflicts(store, further_photo(), MODEL, 1.0, 1.15) == [
        "ada4.jpg: unlike ada's other photos (nearest at 1.200, more than 1.150)"
    ]
    # The same factor on another model's scale: the limit follows the threshold.
    assert enrolment_conflicts(store, further_photo(), MODEL, 0.9, 1.25) != []


def test_enrolment_uses_the_embedders_own_factor(store):
    def pipeline(factor: float):
        spec = dataclasses.replace(SFACE, threshold=1.0, far_from_own_factor=factor)
        return SimpleNamespace(
            embedder=SimpleNamespace(spec=spec), model_id=MODEL, detector=SimpleNamespace(name="")
        )

    with pytest.raises(InputError, match=r"more than 1\.150\); nothing enrolled \(--force"):
        add_faces(store, pipeline(1.15), further_photo())
    assert store.gallery(MODEL)[1].shape[0] == 1  # nothing stored
    assert add_faces(store, pipeline(1.25), further_photo()).embeddings == 2


def test_every_model_has_a_factor_above_one():
    """Below 1 the rule would refuse photos the door itself grants as the person."""
    assert all(1 < spec.far_from_own_factor < 2 for spec in SPECS.values())


def test_the_study_measures_genuine_and_other_peoples_nearest_distances():
    """Two people, each photo 0.1 from its person's axis: genuine cases lie near 0.1-0.2 apart,
    the other person's photo about 1.4 away; the 1 + 2 + 3 photo enrolments of 6 photos each."""
    rng = np.random.default_rng(0)
    people = np.repeat(["ada", "bob"], 6)
    vectors = np.zeros((12, 128), np.float32)
    vectors[:6, 0], vectors[6:, 1] = 1, 1
    vectors[:, 2:] = rng.normal(scale=0.1 / np.sqrt(126), size=(12, 126))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    found = enrolment_cases(people, vectors, cases=20)
    assert found.genuine.shape == found.impostor.shape == (2 * 4 * 20,)  # k = 1, 2, 3 and 5
    assert found.genuine.max() < 0.3 and found.impostor.min() > 1.2
    assert (found.refused(0.3), found.let_through(0.3)) == (0.0, 0.0)
    assert (found.refused(0.0), found.let_through(2.0)) == (1.0, 1.0)
