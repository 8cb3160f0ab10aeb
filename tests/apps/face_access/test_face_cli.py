"""face-enroll / face-check (and face-admin on their database) end to end on real faces,
through the commands only."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from apps.face_access import embedding
from apps.face_access.admin_cli import main as face_admin
from apps.face_access.cli import _load_pipeline, check_command, enroll_command
from apps.face_access.embedding import FaceEmbedder
from apps.face_access.evaluate import door_scenario
from apps.face_access.models import DLIB, SFACE
from apps.face_access.store import FaceStore
from shared.runtime import RUNTIMES, RuntimeUnavailable

REPO_ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture
def run(tmp_path, dlib_dat, yunet_onnx):
    """Invoke a command on a fresh database with the real models (loaded once per process)."""
    db = tmp_path / "faces.db"
    models = ["--db", str(db)]
    embedder = [*models, "--model", str(dlib_dat), "--detector-model", str(yunet_onnx)]

    def invoke(command, *args):
        extra = embedder if command in (enroll_command, check_command) else models
        if command is face_admin:
            args, extra = (args[0], *extra, *args[1:]), []
        return CliRunner().invoke(command, [*map(str, args), *extra])

    invoke.db = db
    return invoke


@pytest.fixture(scope="module")
def att(request):
    root = request.getfixturevalue("data_dir") / "faces" / "att_faces"
    return lambda person, number: root / person / f"{number}.pgm"


def test_enrol_then_grant_deny_and_error_exit_codes(run, att, tmp_path):
    enrolled = run(enroll_command, "s1", att("s1", 1), att("s1", 2), att("s1", 3))
    assert enrolled.exit_code == 0 and enrolled.stdout == "enrolled s1: 3 face(s)\n"
    assert run(enroll_command, "s5", att("s5", 1), att("s5", 2)).exit_code == 0

    granted = run(check_command, att("s1", 8))
    assert granted.exit_code == 0
    assert granted.stdout.startswith("GRANTED s1 (distance 0.")

    denied = run(check_command, att("s9", 1))
    assert denied.exit_code == 1 and denied.stdout.startswith("DENIED (closest s")

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((100, 100, 3), 200, np.uint8))
    error = run(check_command, blank)
    assert error.exit_code == 2 and error.stderr == f"error: {blank}: no face found\n"


def test_several_images_json_one_line_each(run, att, tmp_path):
    run(enroll_command, "s1", att("s1", 1), att("s1", 2))
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    result = run(check_command, "--json", att("s1", 10), att("s9", 2), corrupt)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["decision"] for line in lines] == ["granted", "denied", "error"]
    assert lines[0]["image"] == str(att("s1", 10)) and lines[0]["name"] == "s1"
    assert lines[0]["threshold"] == 0.31 and 0 < lines[0]["distance"] < 0.31
    assert result.exit_code == 2  # an error outranks a denial
    only_good = run(check_command, "--json", att("s1", 7), att("s1", 10))
    assert only_good.exit_code == 0


def test_unusable_images_are_rejected_with_reasons(run, att, tmp_path):
    pair = tmp_path / "pair.png"
    both = np.concatenate([cv2.imread(str(att("s1", 1))), cv2.imread(str(att("s5", 1)))], axis=1)
    cv2.imwrite(str(pair), both)
    result = run(enroll_command, "s1", att("s1", 1), pair, tmp_path / "absent.jpg")
    assert result.exit_code == 0 and "enrolled s1: 1 face(s)" in result.stdout
    assert f"rejected: {pair}: 2 faces found" in result.stderr
    assert f"rejected: {tmp_path / 'absent.jpg'}: no such file" in result.stderr
    # The larger face of the pair is s5's: it enrols s5 (added to s1 it would be refused).
    assert run(enroll_command, "s5", "--largest", pair).stdout == "enrolled s5: 1 face(s)\n"

    nothing = run(enroll_command, "s7", tmp_path / "absent.jpg")
    assert nothing.exit_code == 2 and nothing.stderr.count("\n") == 1


def test_sixteen_bit_and_pgm_inputs(run, att, tmp_path):
    deep = tmp_path / "deep.png"
    cv2.imwrite(str(deep), cv2.imread(str(att("s3", 1))).astype(np.uint16) * 257)
    assert run(enroll_command, "s3", deep, att("s3", 2)).stdout == "enrolled s3: 2 face(s)\n"
    assert run(check_command, att("s3", 5)).exit_code == 0


def test_replace_admin_list_remove_and_audit(run, att):
    run(enroll_command, "s1", att("s1", 1), att("s1", 2))
    run(enroll_command, "s1", "--replace", att("s1", 7))
    run(check_command, att("s1", 4))
    listed = run(face_admin, "list", "--json")
    (person,) = [json.loads(line) for line in listed.stdout.splitlines()]
    assert person["name"] == "s1" and person["count"] == 1

    audit = run(face_admin, "audit", "--since", "1h", "--json")
    (entry,) = [json.loads(line) for line in audit.stdout.splitlines()]
    assert entry["decision"] == "granted" and entry["source"] == str(att("s1", 4))
    assert entry["model_id"] and entry["threshold"] == 0.31

    assert run(face_admin, "remove", "s1").stdout == f"removed s1 (1 embedding) from {run.db}\n"
    missing = run(face_admin, "remove", "s1")
    assert missing.exit_code == 2 and "no one named 's1'" in missing.stderr


def test_repeated_denials_lock_the_door_and_are_audited(run, att):
    run(enroll_command, "s1", att("s1", 1))
    stranger = [att("s9", n) for n in (1, 2, 3)]
    result = run(check_command, "--max-denials", "2", "--cooldown", "600", *stranger, att("s1", 2))
    lines = result.stdout.splitlines()
    assert [line.split(": ", 1)[1].split()[0] for line in lines] == [
        "DENIED",
        "DENIED",
        "REFUSED",
        "REFUSED",
    ]
    # The denial that locks says for how long; even the enrolled person (last) waits it out.
    assert lines[1].endswith("; door locked for 600 s (face-admin unlock lifts it)")
    assert re.search(r"REFUSED \(locked after 2 denials; retry in \d+ s or lift it", lines[3])
    assert result.exit_code == 1
    audit = run(face_admin, "audit", "--json").stdout.splitlines()
    assert [json.loads(line)["decision"] for line in audit] == [
        "denied",
        "denied",
        "refused",
        "refused",
    ]

    unlocked = run(face_admin, "unlock")
    assert unlocked.exit_code == 0 and unlocked.stdout.startswith(f"unlocked {run.db}")
    assert run(check_command, att("s1", 2)).exit_code == 0


def test_other_models_embeddings_are_not_compared(run, att):
    run(enroll_command, "s1", att("s1", 1))
    with sqlite3.connect(run.db) as db:
        db.execute("UPDATE embeddings SET model_id = 'an-older-model'")
    result = run(check_command, att("s1", 2))
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        f"error: {run.db}: enrolled with an-older-model, not dlib; embeddings of two models are "
        "never compared. To move to dlib, enrol everyone again into a new database "
        "(face-enroll --from-folders PHOTOS --model dlib --db NEW.db)\n"
    )


def test_a_database_keeps_its_model_new_ones_get_sface(tmp_path, att, dlib_dat, offline_weights):
    old, new = tmp_path / "old.db", tmp_path / "new.db"
    runner = CliRunner()
    enrolled = runner.invoke(
        enroll_command, ["s1", str(att("s1", 1)), "--db", str(old), "--model", str(dlib_dat)]
    )
    assert enrolled.exit_code == 0
    # No --model: the dlib database is checked with dlib, with a note on how to move.
    checked = runner.invoke(check_command, [str(att("s1", 2)), "--db", str(old)])
    assert checked.exit_code == 0 and checked.stdout.startswith("GRANTED s1")
    assert "was enrolled with dlib and is checked with it" in checked.stderr
    mixed = runner.invoke(
        enroll_command, ["s2", str(att("s2", 1)), "--db", str(old), "--model", "sface"]
    )
    assert mixed.exit_code == 2 and "enrol everyone again into a new database" in mixed.stderr
    assert [p.model_ids for p in FaceStore(old).people()] == [(DLIB.model_id,)]
    # A new database is enrolled with SFace and checked with it, at SFace's threshold.
    assert runner.invoke(enroll_command, ["s1", str(att("s1", 1)), "--db", str(new)]).exit_code == 0
    checked = runner.invoke(check_command, [str(att("s1", 2)), "--db", str(new), "--json"])
    answer = json.loads(checked.stdout)
    assert (answer["decision"], answer["threshold"]) == ("granted", SFACE.threshold)
    assert FaceStore(new).model_ids() == [SFACE.model_id]


def test_a_warm_cache_checks_without_importing_tensorflow(offline_weights, att, tmp_path):
    """What `face-check one.jpg` runs after the first time: no TensorFlow in the process, nor
    OpenVINO's model converter."""
    FaceEmbedder(SFACE, runtime="openvino")  # compiles into the session's cache if not yet
    db = tmp_path / "faces.db"
    photos = [str(att("s1", number)) for number in (1, 2)]
    assert CliRunner().invoke(enroll_command, ["s1", *photos, "--db", str(db)]).exit_code == 0
    script = (
        "import json, sys\n"
        "from apps.face_access.cli import check_command\n"
        "try:\n"
        "    check_command.main(sys.argv[1:])\n"
        "except SystemExit as end:\n"
        "    heavy = ('tensorflow', 'keras', 'openvino.tools.ovc')\n"
        "    loaded = [m for m in sys.modules if m.startswith(heavy)]\n"
        "    print(json.dumps(sorted(loaded)))\n"
        "    sys.exit(end.code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(att("s1", 8)), "--db", str(db)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer, modules = done.stdout.strip().splitlines()
    assert answer.startswith("GRANTED s1 (distance 0.")
    assert json.loads(modules) == [] and done.stderr == ""


def test_runtime_option_reaches_the_embedder(monkeypatch, att, tmp_path, offline_weights):
    asked = []

    def refuse(name, sources, variant, build, runtime=None, quantization=None):
        asked.append(runtime)
        raise RuntimeUnavailable(f"{name} not run in this test")

    monkeypatch.setattr(embedding, "load_model", refuse)
    _load_pipeline.cache_clear()  # a pipeline loaded by an earlier test would hide the option
    for runtime in RUNTIMES:
        args = ["s1", str(att("s1", 1)), "--db", str(tmp_path / f"{runtime}.db")]
        result = CliRunner().invoke(enroll_command, [*args, "--runtime", runtime])
        assert result.exit_code == 2 and "not run in this test" in result.stderr
    assert asked == list(RUNTIMES)
    bad = CliRunner().invoke(check_command, [str(att("s1", 1)), "--runtime", "onnx"])
    assert bad.exit_code == 2 and "--runtime" in bad.stderr


def test_a_failed_enrolment_creates_no_database(run, tmp_path, dlib_dat):
    FaceEmbedder("dlib", dlib_dat)  # a warm compiled-model cache: no "compiling once" note
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((100, 100, 3), 200, np.uint8))
    result = run(enroll_command, "s7", blank)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert not run.db.exists()


def test_enrolment_refuses_a_photo_of_someone_else_unless_forced(run, att):
    assert run(enroll_command, "s1", att("s1", 1), att("s1", 2)).exit_code == 0
    assert run(enroll_command, "s5", att("s5", 1)).exit_code == 0
    # Another enrolled person's photo: it would open the door as them.
    taken = run(enroll_command, "s1", att("s5", 3))
    assert taken.exit_code == 2 and taken.stderr.count("\n") == 1
    assert taken.stderr.startswith(f"error: {att('s5', 3)}: looks like s5 (distance 0.")
    assert taken.stderr.endswith("nothing enrolled (--force to enrol anyway)\n")
    # A stranger's photo: far from all of s1's photos.
    stranger = run(enroll_command, "s1", att("s9", 1))
    assert stranger.exit_code == 2
    assert stranger.stderr.startswith(f"error: {att('s9', 1)}: unlike s1's other photos")
    # Within one command too: the photos of a new person must look alike.
    mixed = run(enroll_command, "s9", att("s9", 1), att("s1", 5))
    assert mixed.exit_code == 2 and "unlike s9's other photos" in mixed.stderr
    assert "(and 1 more)" in mixed.stderr  # s1's photo: it looks like s1
    people = {json.loads(line)["name"]: json.loads(line)["count"]
              for line in run(face_admin, "list", "--json").stdout.splitlines()}  # fmt: skip
    assert people == {"s1": 2, "s5": 1}  # nothing of the refused enrolments was stored

    genuine = run(enroll_command, "s1", "--json", att("s1", 3))
    assert genuine.exit_code == 0
    assert json.loads(genuine.stdout) == {
        "name": "s1",
        "enrolled": [str(att("s1", 3))],
        "rejected": [],
        "embeddings": 3,
    }
    forced = run(enroll_command, "s1", "--force", att("s9", 1))
    assert forced.exit_code == 0 and forced.stdout == "enrolled s1: 1 face(s)\n"


def test_check_says_it_took_the_largest_of_several_faces(run, att, tmp_path):
    run(enroll_command, "s5", att("s5", 1))
    pair = tmp_path / "pair.png"
    both = np.concatenate([cv2.imread(str(att("s1", 1))), cv2.imread(str(att("s5", 2)))], axis=1)
    cv2.imwrite(str(pair), both)
    text = run(check_command, pair)
    assert text.exit_code == 0
    assert re.fullmatch(r"GRANTED s5 \(distance 0\.\d+, the largest of 2 faces\)\n", text.stdout)
    record = json.loads(run(check_command, "--json", pair).stdout)
    assert record["faces"] == 2 and record["locked_for"] == 0


def test_a_failing_door_command_is_reported_and_kept_out_of_json(run, att):
    run(enroll_command, "s1", att("s1", 1))
    command = "echo relay-noise; echo relay-error >&2; exit 3"
    result = run(check_command, "--json", "--on-grant", command, att("s1", 2))
    assert result.exit_code == 2  # the door did not open: not a grant, not a denial
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["decision"] == "granted"
    assert result.stderr == (
        "relay-noise\nrelay-error\nerror: --on-grant command failed (exit 3) for s1\n"
    )


@pytest.mark.parametrize(
    ("command", "args", "flag"),
    [
        (check_command, ["--max-denials", "-1"], "--max-denials"),
        (check_command, ["--window", "0"], "--window"),
        (check_command, ["--consecutive", "0"], "--consecutive"),
        (check_command, ["--cooldown", "-5"], "--cooldown"),
        (check_command, ["--threshold", "-0.1"], "--threshold"),
        (check_command, ["--margin", "3"], "--margin"),
        (check_command, ["--max-frames", "0"], "--max-frames"),
        (enroll_command, ["ada", "--frames", "0"], "--frames"),
    ],
)
def test_numeric_options_out_of_range_are_usage_errors(tmp_path, command, args, flag):
    """Misconfiguration exits 2 naming the flag, never 1 (a denial), before any model loads."""
    result = CliRunner().invoke(command, [*args, "--db", str(tmp_path / "x.db"), "img.jpg"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1  # one line, no usage block
    assert result.stderr.startswith(f"error: Invalid value for '{flag}'")


def test_camera_mode_needs_consecutive_matches_and_runs_the_door_command(run, att, tmp_path):
    run(enroll_command, "s1", att("s1", 1), att("s1", 2))
    video = tmp_path / "door.avi"
    frames = [att("s9", 1)] * 2 + [att("s1", n) for n in (4, 6, 7, 10)]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (92, 112))
    for path in frames:
        writer.write(cv2.imread(str(path)))
    writer.release()
    opened = tmp_path / "opened.txt"
    result = run(check_command, "--camera", video, "--consecutive", "3",
                 "--on-grant", f'printf "%s" "$FACE_NAME" > {opened}')  # fmt: skip
    assert result.exit_code == 0
    # Two denied frames are not enough for a denial; s1 granted at the third s1 frame (#4).
    (line,) = result.stdout.splitlines()
    assert line.startswith(f"camera:{video}#4: GRANTED s1 (distance 0.")
    assert opened.read_text() == "s1"


def test_camera_lockout_is_audited_once_not_per_frame(run, att, tmp_path):
    run(enroll_command, "s1", att("s1", 1))
    video = tmp_path / "stranger.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (92, 112))
    for n in (1, 2, 3, 4, 5, 6):
        writer.write(cv2.imread(str(att("s9", n))))
    writer.release()
    result = run(check_command, "--camera", video, "--consecutive", "1",
                 "--max-denials", "2", "--cooldown", "600")  # fmt: skip
    assert result.exit_code == 1
    audit = [
        json.loads(line)["decision"]
        for line in run(face_admin, "audit", "--json").stdout.splitlines()
    ]
    # Two denials lock the door; the four frames after them give one refusal, not four.
    assert audit == ["denied", "denied", "refused"]


def test_enrol_from_a_camera_takes_the_usable_frames(run, att, tmp_path):
    video = tmp_path / "enrol.avi"
    blank = np.full((112, 92, 3), 128, np.uint8)
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 5, (92, 112))
    for frame in [blank, cv2.imread(str(att("s3", 1))), blank, cv2.imread(str(att("s3", 2)))]:
        writer.write(frame)
    writer.release()
    result = run(enroll_command, "s3", "--camera", video, "--frames", "2")
    assert result.exit_code == 0 and result.stdout == "enrolled s3: 2 face(s)\n"
    with sqlite3.connect(run.db) as db:
        rows = db.execute(
            "SELECT source, detector, length(source_sha256) FROM embeddings ORDER BY id"
        ).fetchall()
    # Frames have no file: their digest is that of the pixels.
    assert rows == [(f"camera:{video}#1", "yunet", 64), (f"camera:{video}#3", "yunet", 64)]


def test_corrupt_database_is_one_line_exit_2(run, att):
    run.db.write_bytes(b"\x00garbage" * 500)
    for result in (run(check_command, att("s1", 1)), run(face_admin, "list")):
        assert result.exit_code == 2
        assert result.stderr == (
            f"error: {run.db}: not a usable face database (file is not a database)\n"
        )


def test_checking_against_a_missing_database_creates_none(run, att):
    result = run(check_command, att("s1", 1))
    assert result.exit_code == 2 and "no face database here" in result.stderr
    assert not run.db.exists()


def test_camera_that_cannot_be_opened(run):
    FaceStore(run.db).close()
    result = run(check_command, "--camera", "7")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1


def test_image_files_and_camera_are_exclusive(run, att):
    result = run(check_command, att("s1", 1), "--camera", "0")
    assert result.exit_code == 2 and "either image files or --camera" in result.stderr


@pytest.mark.slow
def test_door_scenario_on_att_faces(tmp_path, data_dir, dlib_dat, yunet_onnx):
    """The issue's scenario: enrol half of the 40 people with 5 photos, then check every other
    photo of them (should be granted as themselves) and all 200 of the other half."""
    models = ("--model", str(dlib_dat), "--detector-model", str(yunet_onnx))
    figures = door_scenario(
        data_dir / "faces" / "att_faces", tmp_path / "faces.db", model_args=models
    )
    assert (figures.genuine_probes, figures.impostor_probes) == (100, 200)
    assert (figures.wrong_person, figures.impostors_granted, figures.errors) == (0, 0, 0)
    assert figures.true_accept_rate >= 0.94  # measured 0.950 at 0.31; dlib's own: 0.94, no impostor


def test_happy_house_door(run, data_dir):
    """reference/faces.md: the database photos enrolled, then camera_0..5 at the door. Each
    camera face matches its person in the database (checked by eye: same face and shirt);
    camera_0 is younes as in the course, and camera_2 is not kian."""
    images = data_dir / "faces" / "happy_house" / "images"
    database = ["danielle.png", "younes.jpg", "tian.jpg", "andrew.jpg", "kian.jpg", "dan.jpg",
                "sebastiano.jpg", "bertrand.jpg", "kevin.jpg", "felix.jpg", "benoit.jpg",
                "arnaud.jpg"]  # fmt: skip
    for photo in database:
        assert run(enroll_command, photo.split(".")[0], images / photo).exit_code == 0
    cameras = [images / f"camera_{n}.jpg" for n in range(6)]
    result = run(check_command, "--json", *cameras)
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [a["decision"] for a in answers] == ["granted"] * 6 and result.exit_code == 0
    assert [a["name"] for a in answers] == ["younes", "bertrand", "benoit", "bertrand", "dan",
                                            "arnaud"]  # fmt: skip


def test_enrol_from_folders_reports_each_person_and_half_enrols_no_one(run, att, tmp_path):
    staff = tmp_path / "staff"
    for person, numbers in (("s1", (1, 2)), ("s2", (1, 3))):
        (staff / person).mkdir(parents=True)
        for number in numbers:
            (staff / person / f"{number}.pgm").write_bytes(att(person, number).read_bytes())
    # One usable photo and one without a face: still nothing of this person is stored.
    (staff / "s3").mkdir()
    (staff / "s3" / "1.pgm").write_bytes(att("s3", 1).read_bytes())
    cv2.imwrite(str(staff / "s3" / "2.png"), np.full((100, 100, 3), 200, np.uint8))
    (staff / "nobody").mkdir()
    cv2.imwrite(str(staff / "nobody" / "wall.png"), np.full((100, 100, 3), 90, np.uint8))
    result = run(enroll_command, "--from-folders", staff)
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [
        "enrolled s1: 2 face(s)",
        "enrolled s2: 2 face(s)",
        "enrolled s3: 1 face(s)",
    ]
    assert "not enrolled nobody: no usable face to enrol 'nobody'" in result.stderr
    assert f"rejected: {staff / 's3' / '2.png'}: no face found" in result.stderr
    assert result.stderr.endswith("3 of 4 people enrolled\n")
    assert [(p.name, p.count) for p in FaceStore(run.db).people()] == [
        ("s1", 2),
        ("s2", 2),
        ("s3", 1),
    ]
    nameless = run(enroll_command, "s9", "--from-folders", staff)
    assert nameless.exit_code == 2 and "give no NAME" in nameless.stderr
    missing = run(enroll_command, "--from-folders", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "nowhere: not a folder" in missing.stderr
