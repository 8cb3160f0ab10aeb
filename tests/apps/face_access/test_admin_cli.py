"""face-admin through click's runner on a temporary database: list, remove, audit, errors."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from click.testing import CliRunner

from apps.face_access.admin_cli import main
from apps.face_access.store import FaceStore

MODEL = "dlib-resnet-v1"


def run(*args: str):
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "faces.db"
    with FaceStore(path) as store:
        store.enroll("ada", np.zeros((3, 128), np.float32), MODEL)
        store.enroll("bob", np.ones((1, 128), np.float32), "older-model")
    return path


def test_list_shows_people_counts_and_models(db):
    result = run("--db", str(db), "list")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "EMBEDDINGS", "MODELS", "ENROLLED"]
    assert lines[1].split()[:3] == ["ada", "3", MODEL]
    assert lines[2].split()[:3] == ["bob", "1", "older-model"]


def test_list_json_is_one_object_per_line_and_db_works_after_the_subcommand(db):
    result = run("list", "--db", str(db), "--json")
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["name"], r["count"], r["model_ids"]) for r in records] == [
        ("ada", 3, [MODEL]),
        ("bob", 1, ["older-model"]),
    ]
    assert datetime.fromisoformat(records[0]["created"]).tzinfo is not None


def test_list_of_an_empty_database(tmp_path):
    path = tmp_path / "faces.db"
    FaceStore(path).close()
    result = run("--db", str(path), "list")
    assert result.exit_code == 0 and result.output == f"no one is enrolled in {path}\n"


def test_remove_then_list(db):
    result = run("--db", str(db), "remove", "ada")
    assert result.exit_code == 0
    assert result.output == f"removed ada (3 embeddings) from {db}\n"
    assert [line.split()[0] for line in run("--db", str(db), "list").output.splitlines()] == [
        "NAME",
        "bob",
    ]


def test_removing_an_unknown_name_is_exit_2_with_one_line(db):
    result = run("--db", str(db), "remove", "zoe")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == f"error: {db}: no one named 'zoe' is enrolled\n"


def test_a_missing_database_is_reported_not_created(tmp_path):
    missing = tmp_path / "typo.db"
    result = run("--db", str(missing), "list")
    assert result.exit_code == 2
    assert "no face database here" in result.stderr and len(result.stderr.splitlines()) == 1
    assert not missing.exists()


@pytest.mark.parametrize("command", ["list", "audit"])
def test_read_only_commands_never_turn_a_file_into_a_database(tmp_path, command):
    photo = tmp_path / "empty.jpg"
    photo.write_bytes(b"")
    result = run("--db", str(photo), command)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {photo}: not a face database")
    assert photo.read_bytes() == b"" and sorted(tmp_path.iterdir()) == [photo]


def test_debug_on_the_group_shows_the_traceback(tmp_path):
    result = run("--debug", "--db", str(tmp_path / "typo.db"), "list")
    # The traceback as well as the line, and the same exit code as without --debug.
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "InputError" in result.stderr
    assert result.stderr.splitlines()[-1].startswith("error: ")


def test_unlock_lifts_the_lockout(db):
    now = datetime.now(UTC)
    with FaceStore(db) as store:
        for seconds in (3, 2, 1):
            store.log_check("door.jpg", "denied", at=now - timedelta(seconds=seconds))
    result = run("--db", str(db), "unlock")
    assert result.exit_code == 0
    assert result.stdout == f"unlocked {db}: earlier denials no longer count\n"
    with FaceStore(db) as store:
        assert store.recent_denials(60) == []


def test_a_corrupt_database_is_one_line_and_debug_shows_the_traceback(tmp_path):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"definitely not sqlite" * 200)
    result = run("--db", str(junk), "audit")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {junk}: not a usable face database")
    assert len(result.stderr.splitlines()) == 1
    debug = run("--db", str(junk), "audit", "--debug")
    assert debug.exit_code != 0 and debug.exception is not None


@pytest.fixture
def audited(db):
    now = datetime.now(UTC)
    with FaceStore(db) as store:
        store.log_check(
            "old.jpg", "denied", "bob", 0.71, 0.33, MODEL, "too far", at=now - timedelta(hours=3)
        )
        store.log_check(
            "door.jpg", "granted", "ada", 0.2, 0.33, MODEL, "ada", at=now - timedelta(minutes=5)
        )
    return db


def test_audit_table_and_since_duration(audited):
    everything = run("--db", str(audited), "audit").output.splitlines()
    assert everything[0].split()[:4] == ["TIME", "DECISION", "NAME", "DISTANCE"]
    assert [line.split()[2] for line in everything[1:]] == ["denied", "granted"]  # after date+time
    recent = run("--db", str(audited), "audit", "--since", "1h").output.splitlines()
    assert len(recent) == 2 and "door.jpg" in recent[1] and "0.200" in recent[1]


def test_audit_json_with_an_iso_since(audited):
    since = (datetime.now(UTC) - timedelta(hours=4)).replace(tzinfo=None).isoformat()
    result = run("--db", str(audited), "audit", "--since", since, "--json")
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["decision"], r["name"], r["source"]) for r in records] == [
        ("denied", "bob", "old.jpg"),
        ("granted", "ada", "door.jpg"),
    ]
    assert records[1]["distance"] == pytest.approx(0.2) and records[1]["threshold"] == 0.33


def test_audit_with_nothing_since(audited):
    result = run("--db", str(audited), "audit", "--since", "2099-01-01")
    assert (
        result.exit_code == 0 and result.output == "no checks logged since 2099-01-01 00:00:00Z\n"
    )


def test_a_bad_since_is_a_usage_error(audited):
    result = run("--db", str(audited), "audit", "--since", "yesterday")
    assert result.exit_code == 2
    assert "neither a duration like 1h" in result.stderr


def test_help_has_examples():
    result = run("--help")
    assert result.exit_code == 0 and "face-admin audit --since 1h" in result.output
