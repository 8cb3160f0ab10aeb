"""face-eval: dlib's own figures reproduced from dlib's descriptors, hand-made door cases,
the recommended threshold stored for face-check, real photos and a pairs file, bad input."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from apps.face_access.cli import check_command, enroll_command
from apps.face_access.eval_cli import main as face_eval
from apps.face_access.facesets import FaceSet, read_pairs_file
from apps.face_access.store import FaceStore
from apps.face_access.verification import (
    door_simulation,
    recommend_threshold,
    verification_pairs,
)


def _oracle_set(reference_dir, dataset: str, path) -> dict:
    """Save dlib's own descriptors of one oracle set as a face-eval embeddings file."""
    oracle = reference_dir / "dlib_oracle"
    with (oracle / "all_index.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["dataset"] == dataset]
    names = sorted({row["identity"] for row in rows})
    descriptors = np.load(oracle / "all_descriptors.npy")[[int(row["row"]) for row in rows]]
    labels = np.array([names.index(row["identity"]) for row in rows])
    FaceSet(descriptors, labels, names, [row["source"] for row in rows], "dlib-own").save(path)
    return json.loads((oracle / "figures.json").read_text())[dataset]


# The oracle README's door table (dlib's pipeline, enrol 5, nearest descriptor, no margin):
# (set, threshold) -> (TAR, wrong person, impostors granted).
ORACLE_DOOR = {
    ("att", 0.45): (0.960, 1, 0),
    ("att", 0.5): (0.960, 2, 5),
    ("glint", 0.5): (
        0.806,
        0,
        1,
    ),
}


@pytest.mark.parametrize(("dataset", "threshold"), list(ORACLE_DOOR))
def test_reproduces_dlib_oracle_figures_from_its_descriptors(
    reference_dir, tmp_path, dataset, threshold
):
    """AT&T and glint (glint only here: dlib's published figures, as issue 8 names it)."""
    embeddings = tmp_path / f"{dataset}.npz"
    expected = _oracle_set(reference_dir, dataset, embeddings)
    args = [str(embeddings), "--enrol", "5", "--threshold", str(threshold), "--margin", "0"]
    args += ["--json", "--report", str(tmp_path / "r.json"), "--roc", str(tmp_path / "roc.png")]
    result = CliRunner().invoke(face_eval, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    pairs = report["pairs"]
    assert pairs["genuine_pairs"] == expected["n_genuine"]
    assert pairs["impostor_pairs"] == expected["n_impostor_all"]
    assert pairs["ten_fold_accuracy"] == pytest.approx(expected["cv10_acc_mean"], abs=0.01)
    for far in ("0.01", "0.001", "0.0001"):
        oracle = expected[f"TAR@FAR={far}_all"]
        assert pairs["tar_at_far"][f"{float(far):g}"]["tar"] == pytest.approx(
            oracle["TAR"], abs=0.01
        )
    tar, wrong, impostors = ORACLE_DOOR[(dataset, threshold)]
    door = report["door"]
    assert door["tar"] == pytest.approx(tar, abs=0.005)
    assert (door["wrong_person"], door["impostors_granted"]) == (wrong, impostors)
    assert door["impostor_probes"] == {"att": 200, "glint": 240}[dataset]
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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


def test_recommended_threshold_is_stored_and_used_by_face_check(
    tmp_path, reference_dir, data_dir, dlib_dat, yunet_onnx, pipeline
):
    """face-eval --recommend-threshold --db stores the threshold under the embeddings' model
    id; face-check then applies it when --threshold is not given."""
    db = tmp_path / "door.db"
    models = ["--db", str(db), "--weights", str(dlib_dat), "--detector-model", str(yunet_onnx)]
    att = data_dir / "faces" / "att_faces"
    enrolled = CliRunner().invoke(enroll_command, ["s1", str(att / "s1" / "1.pgm"), *models])
    assert enrolled.exit_code == 0, enrolled.output
    probe = [str(att / "s1" / "8.pgm"), "--json", "--max-denials", "0", *models]
    before = json.loads(CliRunner().invoke(check_command, probe).stdout)
    assert before["decision"] == "granted" and before["threshold"] == 0.31

    # An embeddings file in this pipeline's model id whose FAR-1e-3 threshold falls below
    # the probe's distance: two "people" only 0.05 apart, so that is the FAR-0.5 threshold.
    vectors = np.zeros((4, 128), np.float32)
    vectors[:, 0] = [0.0, 0.001, 0.05, 0.051]
    embeddings = tmp_path / "tiny.npz"
    FaceSet(vectors, np.array([0, 0, 1, 1]), ["a", "b"], [], pipeline.model_id).save(embeddings)
    args = [str(embeddings), "--recommend-threshold", "--far", "0.5", "--db", str(db)]
    args += ["--folds", "2"]
    args += ["--report", str(tmp_path / "r.json"), "--roc", str(tmp_path / "r.png")]
    result = CliRunner().invoke(face_eval, args)
    assert result.exit_code == 0, result.output
    assert "recommended threshold" in result.stdout and f"stored as the threshold of {db}" in (
        result.stdout
    )
    with FaceStore(db) as store:
        stored = store.threshold(pipeline.model_id)
        assert store.threshold("another-model") is None
    assert stored == pytest.approx(
        json.loads((tmp_path / "r.json").read_text())["recommendation"]["threshold"]
    )
    after = json.loads(CliRunner().invoke(check_command, probe).stdout)
    assert after["threshold"] == pytest.approx(stored)
    assert after["decision"] == "denied"  # the probe's distance is above the stored threshold
    explicit = json.loads(CliRunner().invoke(check_command, [*probe, "--threshold", "0.31"]).stdout)
    assert explicit["decision"] == "granted"


@pytest.fixture
def small_set(tmp_path, data_dir):
    """Three LFW dev people (links to ../shared, nothing copied) and a photo without a face."""
    lfw = data_dir / "faces" / "lfw_deepfunneled"
    root = tmp_path / "people"
    root.mkdir()
    for person in ("Ai_Sugiyama", "Ali_Naimi", "Ana_Palacio"):
        (root / person).mkdir()
        for photo in sorted((lfw / person).glob("*.jpg"))[:4]:
            (root / person / photo.name).symlink_to(photo)
    cv2.imwrite(str(root / "Ana_Palacio" / "blank.png"), np.full((90, 90, 3), 128, np.uint8))
    return root


def test_folder_and_pairs_file_on_real_photos(small_set, tmp_path, offline_weights, dlib_dat):
    out = ["--report", str(tmp_path / "r.json"), "--roc", str(tmp_path / "r.png")]
    args = [str(small_set), "--weights", str(dlib_dat), "--several", "central", "--json", *out]
    saved = tmp_path / "set.npz"
    result = CliRunner().invoke(face_eval, [*args, "--save-embeddings", str(saved)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["photos_skipped"] == 1 and "blank.png: no face found" in report["skipped"][0]
    assert report["photos_used"] == 12 and report["pairs"]["genuine_pairs"] == 3 * 6
    assert report["pairs"]["auc"] > 0.9  # three distinct people, dlib's embedder
    # The saved embeddings give the same report without the models.
    again = CliRunner().invoke(face_eval, [str(saved), "--json", *out])
    assert json.loads(again.stdout)["pairs"] == report["pairs"]

    pairs = tmp_path / "pairs.txt"
    pairs.write_text(
        "1\t4\nAi_Sugiyama\t1\t2\nAli_Naimi\t1\t3\nAi_Sugiyama\t1\tAli_Naimi\t2\n"
        "Ana_Palacio\t1\tAli_Naimi\t4\n"
    )
    parsed = read_pairs_file(pairs, small_set)
    assert parsed.same.tolist() == [True, True, False, False]
    assert parsed.first[2] == small_set / "Ai_Sugiyama" / "Ai_Sugiyama_0001.jpg"
    result = CliRunner().invoke(
        face_eval,
        [
            str(pairs),
            "--images",
            str(small_set),
            "--folds",
            "2",
            "--json",
            "--several",
            "central",
            "--weights",
            str(dlib_dat),
            *out,
        ],
    )
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)["pairs"]
    assert (figures["genuine_pairs"], figures["impostor_pairs"]) == (2, 2)


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    result = runner.invoke(face_eval, [str(empty)])
    assert result.exit_code == 2 and result.stderr == f"error: {empty}: no person folders found\n"
    (empty / "alice").mkdir()
    result = runner.invoke(face_eval, [str(empty), "--roles", "train"])
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"error: {empty / 'SPLITS.tsv'}: no such file (needed to select people by role)\n"
    )
    bad_pairs = tmp_path / "pairs.txt"
    bad_pairs.write_text("alice 1\n")
    result = runner.invoke(face_eval, [str(bad_pairs)])
    assert result.exit_code == 2 and "pairs.txt:1: expected 'name n1 n2'" in result.stderr
    not_npz = tmp_path / "x.npz"
    not_npz.write_bytes(b"nope")
    result = runner.invoke(face_eval, [str(not_npz)])
    assert result.exit_code == 2 and "not an embeddings file saved by face-eval" in result.stderr
    result = runner.invoke(face_eval, [str(not_npz), "--db", str(tmp_path / "d.db")])
    assert result.exit_code == 2 and "--recommend-threshold" in result.stderr
    result = runner.invoke(face_eval, [str(not_npz), "--far", "2"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1


def test_aligned_crops_are_recut_onto_the_embedders_chip(tmp_path, data_dir, pipeline):
    """An ArcFace 112x112 crop made from a photo's own landmarks, read with --aligned, gives
    nearly the chip the detector path cuts from the photo (two resamplings apart)."""
    from apps.face_access.alignment import similarity_transform
    from apps.face_access.facesets import ARCFACE_112_TEMPLATE, Photo, align_photos
    from shared.images import read_image, write_image

    photo = data_dir / "faces" / "lfw_deepfunneled" / "Ai_Sugiyama" / "Ai_Sugiyama_0001.jpg"
    rgb = read_image(photo)
    face, chip, _ = pipeline.usable_chip(rgb, photo, central=True)
    to_crop = similarity_transform(face.landmarks, ARCFACE_112_TEMPLATE)
    crop = cv2.warpAffine(rgb, to_crop, (112, 112), flags=cv2.INTER_LINEAR)
    (tmp_path / "ai").mkdir()
    write_image(tmp_path / "ai" / "crop.png", crop)
    recut = align_photos([Photo(tmp_path / "ai" / "crop.png", "ai")], pipeline, aligned=True)
    assert not recut.skipped and recut.chips.shape == (1, 150, 150, 3)
    # Compare the inner face (the crop holds less background than the 150 chip).
    inner = (slice(40, 115), slice(35, 115))
    difference = np.abs(recut.chips[0][inner].astype(int) - chip[inner].astype(int))
    assert difference.mean() < 12
    assert (
        np.linalg.norm(
            pipeline.embedder.embed(recut.chips)[0] - pipeline.embedder.embed(chip[None])[0]
        )
        < 0.2
    )  # the same face to the embedder (same-person pairs: ~0.3)
