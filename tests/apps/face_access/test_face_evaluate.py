"""The random-split door protocol on hand-made embeddings whose answers are known."""

from __future__ import annotations

import csv
import math
import shutil

import numpy as np

from apps.face_access.evaluate import (
    LEVER_SCORES,
    development_photos,
    lever_table,
    pair_distances,
    random_splits,
    write_chips,
)
from shared.images import read_image, write_image

LABELS = np.repeat(np.arange(4), 3)  # four people, three photos each


def test_distinct_people_are_all_granted_and_no_impostor_comes_near():
    vectors = np.eye(4, dtype=np.float32)[LABELS]  # photos of a person coincide
    figures = random_splits(LABELS, vectors, splits=20, enrol=1, threshold=0.31, margin=0.05)
    np.testing.assert_array_equal(figures.true_accept_rates, np.ones(20))
    assert figures.wrong_person == figures.impostors_granted == figures.splits_with_impostor == 0
    assert figures.impostor_probes == 20 * 6  # two people of three photos left out each time
    assert math.isclose(figures.nearest_impostor, math.sqrt(2), rel_tol=1e-6)


def test_a_look_alike_gets_in_when_only_the_other_is_enrolled():
    """People 2 and 3 have the same face. Enrolled together (the whole gallery), the margin
    denies all their probes (TAR 0, never the wrong person); one enrolled, the other's 3
    photos get in."""
    basis = np.eye(4, dtype=np.float32)
    basis[3] = basis[2]
    figures = random_splits(LABELS, basis[LABELS], splits=60, enrol=1, threshold=0.31, margin=0.05)
    rates = figures.true_accept_rates
    assert set(rates.tolist()) <= {0.0, 1.0} and (rates == 0).any()
    assert figures.wrong_person == 0
    assert figures.splits_with_impostor > 0
    assert figures.impostors_granted == 3 * figures.splits_with_impostor
    assert figures.splits_with_impostor + (rates == 0).sum() <= 60
    assert figures.nearest_impostor == 0


def test_a_photo_without_a_usable_face_is_never_granted():
    vectors = np.eye(4, dtype=np.float32)[LABELS]
    vectors[0] = np.nan  # person 0's first photo
    figures = random_splits(LABELS, vectors, splits=40, enrol=1, threshold=0.31, margin=0.05)
    # Person 0 enrolled: from that photo, nothing is enrolled and both probes fail (0.5);
    # as one of the two probes, it alone fails (0.75). Not enrolled: every probe passes.
    rates = figures.true_accept_rates
    assert set(rates.tolist()) == {0.5, 0.75, 1.0}
    assert figures.impostors_granted == 0


def test_lever_table_scores_every_rule_on_the_same_splits():
    """Distinct people: every distance-based rule grants all genuine probes; with a look-alike
    pair (2 and 3) no rule can grant person 2 or 3 without letting the other in, and the rule
    says how many genuine probes are lost at the strictest impostor-free threshold."""
    distinct = np.eye(4, dtype=np.float32)[LABELS]
    lines = lever_table(LABELS, {"plain": distinct}, splits=10, enrol=1)
    assert len(lines) == len(LEVER_SCORES)
    rule_line = next(line for line in lines if "distance (the rule)" in line)
    assert "TAR 1.000 (no impostor)" in rule_line
    look_alike = distinct.copy()
    look_alike[LABELS == 3] = np.eye(4, dtype=np.float32)[2]
    lines = lever_table(LABELS, {"plain": look_alike}, splits=10, enrol=1)
    rule_line = next(line for line in lines if "distance, no margin" in line)
    assert "TAR 1.000" not in rule_line  # the look-alike's impostor distance 0 blocks them


def test_pair_distances_split_genuine_from_impostor_pairs():
    vectors = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]], np.float32)
    genuine, impostor = pair_distances(vectors, np.array(["a", "a", "b"]))
    np.testing.assert_allclose(genuine, [np.sqrt(2)], rtol=1e-6)
    np.testing.assert_allclose(sorted(impostor), [np.sqrt(2), 2.0], rtol=1e-6)


def test_development_photos_lists_every_set_with_its_roles(data_dir):
    photos = development_photos(data_dir / "faces")
    sets = {name for name, *_ in photos}
    roles = {role for _, _, role, _ in photos}
    assert sets == {"lfw", "att", "celeba"}
    assert {"train", "dev_enrol", "dev_stranger", "att", "val"} <= roles
    # glint, reserved for final figures, is never read by the study
    assert not any("glint" in str(photo) for *_, photo in photos)
    assert sum(name == "att" for name, *_ in photos) == 400


def test_write_chips_copies_the_dev_door_as_aligned_chips(data_dir, pipeline, tmp_path):
    lfw = data_dir / "faces" / "lfw_deepfunneled"
    door = tmp_path / "lfw"
    people = {"Ai_Sugiyama": "dev_enrol", "Abdullah": "dev_stranger", "Wall": "train"}
    for person in people:
        (door / person).mkdir(parents=True)
    for number in (1, 2, 3, 4):
        name = f"Ai_Sugiyama_000{number}.jpg"
        shutil.copy(lfw / "Ai_Sugiyama" / name, door / "Ai_Sugiyama" / name)
    shutil.copy(lfw / "Ai_Sugiyama" / "Ai_Sugiyama_0005.jpg", door / "Abdullah" / "a.jpg")
    write_image(door / "Abdullah" / "blank.png", np.full((80, 80, 3), 128, np.uint8))
    enrol = "Ai_Sugiyama_0001.jpg,Ai_Sugiyama_0002.jpg,Ai_Sugiyama_0003.jpg"
    rows = [(person, role, enrol if role == "dev_enrol" else "") for person, role in people.items()]
    (door / "SPLITS.tsv").write_text(
        "identity\trole\tenrol_files\n" + "".join("\t".join(row) + "\n" for row in rows)
    )
    chips = tmp_path / "chips"
    assert write_chips(door, chips, pipeline) == 1  # the blank image
    size = pipeline.embedder.spec.chip_size
    written = sorted(path.relative_to(chips).as_posix() for path in chips.rglob("*.png"))
    assert written == ["Abdullah/a.png"] + [
        f"Ai_Sugiyama/Ai_Sugiyama_000{n}.png" for n in (1, 2, 3, 4)
    ]
    assert read_image(chips / "Abdullah" / "a.png").shape == (size, size, 3)
    with open(chips / "SPLITS.tsv", newline="") as table:
        splits = {row["identity"]: row for row in csv.DictReader(table, delimiter="\t")}
    assert set(splits) == {"Ai_Sugiyama", "Abdullah"}  # the train people are not part of the door
    assert splits["Ai_Sugiyama"]["enrol_files"] == enrol.replace(".jpg", ".png")
