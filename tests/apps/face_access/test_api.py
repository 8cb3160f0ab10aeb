"""The three-verb face API on real AT&T faces: find, encode, compare."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from apps.face_access import api


@pytest.fixture
def default_models(offline_weights):
    """The API's lazily loaded default models, found by the resolver in ../shared/weights."""
    return api.default_pipeline()


@pytest.fixture(scope="module")
def att(request):
    root = request.getfixturevalue("data_dir") / "faces" / "att_faces"
    return lambda person, number: api.load_image_file(root / person / f"{number}.pgm")


def test_locations_encodings_and_comparisons(default_models, att):
    alice, alice_again, stranger = att("s1", 1), att("s1", 2), att("s9", 1)
    assert alice.dtype == np.uint8 and alice.shape == (112, 92, 3)  # grey PGM read as RGB
    ((x1, y1, x2, y2),) = api.face_locations(alice)
    assert 0 <= x1 < x2 <= 92 and 0 <= y1 < y2 <= 112
    (known,) = api.face_encodings(alice)
    assert known.shape == (128,) and np.linalg.norm(known) == pytest.approx(1, abs=1e-5)
    # The same vector the door computes for this face.
    door = default_models.face_vector(alice, "s1/1").vector
    np.testing.assert_allclose(known, door, atol=1e-5)

    (same,) = api.face_encodings(alice_again)
    (other,) = api.face_encodings(stranger)
    assert api.compare_faces([known, other], same) == [True, False]
    distances = api.face_distance([known, other], same)
    assert distances[0] < default_models.embedder.spec.threshold < distances[1]
    assert api.compare_faces([known], same, tolerance=distances[0] / 2) == [False]


def test_several_faces_largest_first_and_none(default_models, att):
    small = cv2.resize(att("s9", 1), (69, 84))
    canvas = np.zeros((112, 92 + 69, 3), np.uint8)
    canvas[:, :92], canvas[:84, 92:] = att("s1", 1), small
    boxes = api.face_locations(canvas)
    assert len(boxes) == 2 and boxes[0][0] < 92 <= boxes[1][0]  # s1's larger face first
    first, second = api.face_encodings(canvas)
    (alice,) = api.face_encodings(att("s1", 1))
    assert api.compare_faces([first, second], alice) == [True, False]
    assert api.face_locations(np.zeros((50, 50, 3), np.uint8)) == []
    assert api.face_encodings(np.zeros((50, 50, 3), np.uint8)) == []


def test_images_must_be_rgb_uint8():
    with pytest.raises(ValueError, match=r"RGB uint8 image of shape \(height, width, 3\)"):
        api.face_locations(np.zeros((10, 10), np.float32))


def test_the_readme_snippet_runs(default_models, data_dir, tmp_path, monkeypatch, capsys):
    readme = (Path(__file__).resolve().parents[3] / "README.md").read_text()
    marker = "<!-- tested by tests/apps/face_access/test_api.py -->\n```python\n"
    snippet = readme.split(marker, 1)[1].split("```", 1)[0]
    faces = data_dir / "faces" / "att_faces"
    monkeypatch.chdir(tmp_path)
    cv2.imwrite("alice.jpg", cv2.imread(str(faces / "s1" / "1.pgm")))
    cv2.imwrite("visitor.jpg", cv2.imread(str(faces / "s1" / "2.pgm")))
    exec(compile(snippet, "README.md", "exec"), {})
    assert re.fullmatch(r"\(\d+, \d+, \d+, \d+\) \[True\]\n", capsys.readouterr().out)
