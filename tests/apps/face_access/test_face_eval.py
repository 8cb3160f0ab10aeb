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
from apps.face_access.verification import faceset_report


def test_face_eval_on_saved_embeddings_reports_the_library_figures(reference_dir, tmp_path):
    """dlib's own descriptors of the AT&T oracle set, saved as an embeddings file: the command
    prints and writes exactly ``verification.faceset_report``'s figures (which reproduce the
    oracle README: ``test_verification.py``), and a ROC plot."""
    oracle = reference_dir / "dlib_oracle"
    with (oracle / "all_index.csv").open(newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["dataset"] == "att"]
    names = sorted({row["identity"] for row in rows})
    descriptors = np.load(oracle / "all_descriptors.npy")[[int(row["row"]) for row in rows]]
    labels = np.array([names.index(row["identity"]) for row in rows])
    faceset = FaceSet(descriptors, labels, names, [row["source"] for row in rows], "dlib-own")
    faceset.save(tmp_path / "att.npz")
    args = [str(tmp_path / "att.npz"), "--enrol", "5", "--threshold", "0.45", "--margin", "0"]
    args += ["--json", "--report", str(tmp_path / "r.json"), "--roc", str(tmp_path / "roc.png")]
    result = CliRunner().invoke(face_eval, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    expected, _ = faceset_report(
        FaceSet.load(tmp_path / "att.npz"), enrol=5, threshold=0.45, margin=0
    )
    assert report == {"dataset": str(tmp_path / "att.npz"), **json.loads(json.dumps(expected))}
    assert report["pairs"]["ten_fold_accuracy"] == pytest.approx(0.98, abs=0.005)
    assert json.loads((tmp_path / "r.json").read_text()) == report
    assert (tmp_path / "roc.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # Without --threshold, an embeddings file of no catalogued model has no door threshold of
    # its own: the door runs at the FAR 1e-3 threshold of these pairs.
    args = [str(tmp_path / "att.npz"), "--json", "--report", str(tmp_path / "r2.json")]
    result = CliRunner().invoke(face_eval, [*args, "--roc", str(tmp_path / "roc2.png")])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["door"]["threshold"] == report["pairs"]["tar_at_far"]["0.001"]["threshold"]


def test_recommended_threshold_is_stored_and_used_by_face_check(
    tmp_path, reference_dir, data_dir, dlib_dat, yunet_onnx, pipeline
):
    """face-eval --recommend-threshold --db stores the threshold under the embeddings' model
    id; face-check then applies it when --threshold is not given."""
    db = tmp_path / "door.db"
    models = ["--db", str(db), "--model", str(dlib_dat), "--detector-model", str(yunet_onnx)]
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
    args = [str(small_set), "--model", str(dlib_dat), "--several", "central", "--json", *out]
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
            "--model",
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
    from apps.face_access.alignment import ARCFACE_TEMPLATE, similarity_transform
    from apps.face_access.facesets import Photo, align_photos
    from shared.images import read_image, write_image

    photo = data_dir / "faces" / "lfw_deepfunneled" / "Ai_Sugiyama" / "Ai_Sugiyama_0001.jpg"
    rgb = read_image(photo)
    face, chip, _ = pipeline.usable_chip(rgb, photo, central=True)
    to_crop = similarity_transform(face.landmarks, ARCFACE_TEMPLATE)
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
