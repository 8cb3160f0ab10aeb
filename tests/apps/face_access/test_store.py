"""The SQLite face store: privacy, WAL, model ids, audit, bad files, locks, concurrent writers."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from apps.face_access.decision import DenialLockout
from apps.face_access.store import FaceStore, default_db_path
from shared.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[3]
MODEL = "dlib-resnet-v1"


def vectors(count: int, seed: int = 0, dims: int = 128) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, dims)).astype(np.float32)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_database_is_private_from_the_start_and_in_wal_mode(tmp_path, monkeypatch):
    """0600 even with a permissive umask, and without chmod (which would leave a window)."""
    path = tmp_path / "faces.db"
    old_umask = os.umask(0)
    monkeypatch.setattr(os, "chmod", lambda *args: pytest.fail("chmod after creation"))
    try:
        with FaceStore(path) as store:
            store.enroll("ada", vectors(1), MODEL)
            # WAL's NORMAL sync (1): no fsync per audited check (see the store's docstring).
            assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1
            assert mode(path) == 0o600
            assert mode(Path(f"{path}-wal")) == 0o600  # SQLite copies the database's mode
            assert mode(Path(f"{path}-shm")) == 0o600
    finally:
        os.umask(old_umask)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1


def test_default_location_is_the_user_data_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_db_path() == tmp_path / "data" / "convnet-apps" / "faces.db"
    with FaceStore() as store:
        assert store.path == default_db_path()
    assert mode(default_db_path().parent) == 0o700
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / ".local" / "share" / "convnet-apps" / "faces.db"


def test_enrolled_vectors_come_back_exactly_grouped_by_person(tmp_path):
    ada, bob = vectors(3, seed=1), vectors(2, seed=2)
    with FaceStore(tmp_path / "faces.db") as store:
        assert store.enroll("bob", bob, MODEL) == 2
        assert store.enroll("ada", ada[:2], MODEL) == 2
        assert store.enroll("ada", ada[2], MODEL) == 3  # more photos later
        names, matrix, person_of_row = store.gallery(MODEL)
    assert names == ["ada", "bob"]  # sorted, whatever the enrolment order
    assert matrix.dtype == np.float32 and matrix.shape == (5, 128)
    np.testing.assert_array_equal(matrix[person_of_row == 0], ada)  # in enrolment order
    np.testing.assert_array_equal(matrix[person_of_row == 1], bob)
    assert np.count_nonzero(np.diff(person_of_row)) == 1  # each person's rows together


def test_sources_scores_and_file_digests_are_recorded(tmp_path):
    photo = tmp_path / "ada.jpg"
    photo.write_bytes(b"pretend jpeg bytes")
    db = tmp_path / "faces.db"
    with FaceStore(db) as store:
        store.enroll(
            "ada",
            vectors(2),
            MODEL,
            sources=[photo, "camera:0"],
            scores=[0.93, 0.81],
            detector="yunet",
        )
        store.enroll("bob", vectors(1), MODEL, sources=["camera:1"], digests=["ab" * 32])
    with sqlite3.connect(db) as raw:
        rows = raw.execute(
            "SELECT source, source_sha256, detector_score, detector, model_id, created"
            " FROM embeddings ORDER BY id"
        ).fetchall()
    assert rows[0][:5] == (
        str(photo),
        hashlib.sha256(b"pretend jpeg bytes").hexdigest(),
        pytest.approx(0.93),
        "yunet",
        MODEL,
    )
    assert rows[1][:4] == ("camera:0", None, pytest.approx(0.81), "yunet")
    assert rows[2][:4] == ("camera:1", "ab" * 32, None, None)  # a digest given, no detector
    assert datetime.fromisoformat(rows[0][5]).utcoffset() == timedelta(0)


def test_replace_starts_a_person_afresh(tmp_path):
    with FaceStore(tmp_path / "faces.db") as store:
        store.enroll("ada", vectors(3, seed=1), MODEL)
        store.enroll("ada", vectors(3, seed=1), "older-model")
        assert store.enroll("ada", vectors(1, seed=9), MODEL, replace=True) == 1
        _, matrix, _ = store.gallery(MODEL)
        np.testing.assert_array_equal(matrix, vectors(1, seed=9))
        assert store.gallery("older-model")[0] == []  # replace drops every model's vectors


def test_other_models_are_never_mixed_in_and_stale_people_are_named(tmp_path):
    with FaceStore(tmp_path / "faces.db") as store:
        store.enroll("ada", vectors(1), MODEL)
        store.enroll("bob", vectors(2), "older-model")
        store.enroll("cy", vectors(1), "older-model")
        store.enroll("cy", vectors(1), MODEL)
        names, matrix, _ = store.gallery(MODEL)
        assert names == ["ada", "cy"] and len(matrix) == 2
        assert store.stale_people(MODEL) == ["bob"]
        people = {person.name: person for person in store.people()}
    assert people["cy"].count == 2
    assert people["cy"].model_ids == ("dlib-resnet-v1", "older-model")
    assert people["bob"].model_ids == ("older-model",)
    assert people["ada"].created.tzinfo is not None


def test_a_model_keeps_one_dimension(tmp_path):
    with FaceStore(tmp_path / "faces.db") as store:
        store.enroll("ada", vectors(1, dims=128), MODEL)
        with pytest.raises(InputError, match="128-d embeddings enrolled, these are 64-d"):
            store.enroll("bob", vectors(1, dims=64), MODEL)
        assert [p.name for p in store.people()] == ["ada"]  # the failed enrolment left nothing


def test_bad_names_and_vectors_are_refused(tmp_path):
    with FaceStore(tmp_path / "faces.db") as store:
        with pytest.raises(InputError, match="empty"):
            store.enroll("  ", vectors(1), MODEL)
        with pytest.raises(ValueError, match="NaN"):
            store.enroll("ada", np.full((1, 128), np.nan, np.float32), MODEL)
        with pytest.raises(ValueError, match="2 embeddings but 1 sources"):
            store.enroll("ada", vectors(2), MODEL, sources=["one.jpg"])


def test_names_are_data_not_sql(tmp_path):
    name = "Robert'); DROP TABLE people;--"
    with FaceStore(tmp_path / "faces.db") as store:
        store.enroll(name, vectors(1), MODEL)
        assert [person.name for person in store.people()] == [name]


def test_remove_deletes_the_person_and_their_embeddings(tmp_path):
    db = tmp_path / "faces.db"
    with FaceStore(db) as store:
        store.enroll("ada", vectors(3), MODEL)
        store.enroll("bob", vectors(1), MODEL)
        assert store.remove("ada") == 3
        assert [p.name for p in store.people()] == ["bob"]
        with pytest.raises(InputError, match="no one named 'ada' is enrolled"):
            store.remove("ada")
    with sqlite3.connect(db) as raw:
        assert raw.execute("SELECT count(*) FROM embeddings").fetchone()[0] == 1


NOON = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_audit_log_round_trip_and_since(tmp_path):
    with FaceStore(tmp_path / "faces.db") as store:
        store.log_check("door.jpg", "granted", "ada", 0.21, 0.33, MODEL, "ada at 0.210", at=NOON)
        store.log_check("cam:0", "denied", "bob", 0.52, 0.33, MODEL, at=NOON + timedelta(hours=1))
        store.log_check(None, "error", reason="no face", at=NOON + timedelta(hours=2))
        entries = store.audit()
        later = store.audit(since=NOON + timedelta(minutes=30))
    assert [entry.decision for entry in entries] == ["granted", "denied", "error"]
    first = entries[0]
    assert (first.time, first.source, first.name, first.distance, first.threshold) == (
        NOON,
        "door.jpg",
        "ada",
        pytest.approx(0.21),
        pytest.approx(0.33),
    )
    assert first.to_dict()["time"] == "2026-03-01T12:00:00.000000+00:00"
    assert [entry.source for entry in later] == ["cam:0", None]


def test_unknown_decision_is_a_programming_error(tmp_path):
    with FaceStore(tmp_path / "faces.db") as store, pytest.raises(ValueError):
        store.log_check("x.jpg", "maybe")


def test_recent_denials_counts_only_denials_inside_the_window(tmp_path):
    with FaceStore(tmp_path / "faces.db") as store:
        for seconds, decision in [(0, "denied"), (30, "granted"), (45, "denied"), (50, "refused")]:
            store.log_check("cam:0", decision, at=NOON + timedelta(seconds=seconds))
        now = NOON + timedelta(seconds=70)
        assert store.recent_denials(60, now=now) == [NOON + timedelta(seconds=45)]
        assert store.recent_denials(100, now=now) == [NOON, NOON + timedelta(seconds=45)]


def one_line_error(excinfo: pytest.ExceptionInfo, path: Path) -> str:
    message = str(excinfo.value)
    assert "\n" not in message and str(path) in message
    return message


def test_a_file_that_is_not_a_database_is_one_clear_error(tmp_path):
    path = tmp_path / "photo.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 not sqlite at all" * 100)
    with pytest.raises(InputError) as excinfo:
        FaceStore(path)
    assert "not a usable face database" in one_line_error(excinfo, path)


def test_a_corrupt_database_is_one_clear_error(tmp_path):
    path = tmp_path / "faces.db"
    with FaceStore(path) as store:
        store.enroll("ada", vectors(20), MODEL)
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\x07" * (4096 - 100)  # the schema page, after the file header
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as excinfo, FaceStore(path) as store:
        store.people()
    assert "malformed" in one_line_error(excinfo, path)


def test_another_programs_database_is_refused(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(InputError, match="not a face database"):
        FaceStore(path)


def test_a_database_from_a_newer_version_is_refused(tmp_path):
    path = tmp_path / "faces.db"
    FaceStore(path).close()
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version = 7")
    with pytest.raises(InputError) as excinfo:
        FaceStore(path)
    assert "newer version" in one_line_error(excinfo, path)


def test_missing_files_and_folders(tmp_path):
    with pytest.raises(InputError, match="no face database here"):
        FaceStore(tmp_path / "absent.db", create=False)
    with pytest.raises(InputError, match="folder does not exist"):
        FaceStore(tmp_path / "no" / "such" / "faces.db")
    with pytest.raises(InputError, match="is a folder"):
        FaceStore(tmp_path)
    assert not (tmp_path / "absent.db").exists()


def test_a_lock_held_beyond_the_timeout_is_one_clear_error(tmp_path):
    path = tmp_path / "faces.db"
    FaceStore(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with FaceStore(path, timeout=0.2) as store:
            assert store.people() == []  # WAL: reading goes on during another's write
            started = time.monotonic()
            with pytest.raises(InputError) as excinfo:
                store.enroll("ada", vectors(1), MODEL)
            assert time.monotonic() - started >= 0.15  # it waited before giving up
        assert "locked by another process" in one_line_error(excinfo, path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    with FaceStore(path, timeout=0.2) as store:  # the lock is gone, and so is the error
        assert store.enroll("ada", vectors(1), MODEL) == 1


ENROL_MANY = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from apps.face_access.store import FaceStore
    db, prefix, count, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    while not go.exists():
        time.sleep(0.001)
    for i in range(count):
        with FaceStore(db) as store:
            store.enroll(f"{prefix}{i}", np.full((3, 128), i, np.float32), "m", sources="abc")
    """
)


def test_two_enrolling_processes_at_once_lose_nothing(tmp_path):
    """Two real processes, both creating the fresh database and then writing 25 people
    each, one connection per person, as two face-enroll commands would."""
    db, go = tmp_path / "faces.db", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", ENROL_MANY, str(db), prefix, "25", str(go)],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        for prefix in ("a", "b")
    ]
    time.sleep(0.5)  # both interpreters waiting at the starting line
    go.touch()
    for worker in workers:
        _, errors = worker.communicate(timeout=120)
        assert worker.returncode == 0, errors
    with FaceStore(db) as store:
        people = store.people()
        names, matrix, _ = store.gallery("m")
    assert len(people) == 50 and all(person.count == 3 for person in people)
    assert len(names) == 50 and matrix.shape == (150, 128)


def test_a_lockout_holds_across_separate_connections(tmp_path):
    """The denials that trigger a lockout live in the audit log, so a new process sees them."""
    lockout = DenialLockout(max_denials=3, window_s=60, cooldown_s=120)
    for seconds in (0, 10, 20):
        with FaceStore(tmp_path / "faces.db") as door:  # one face-check process per denial
            door.log_check("cam:0", "denied", at=NOON + timedelta(seconds=seconds))
    now = NOON + timedelta(seconds=30)
    with FaceStore(tmp_path / "faces.db") as next_check:
        denials = next_check.recent_denials(lockout.lookback_s, now=now)
    assert lockout.refused_until(denials, now) == NOON + timedelta(seconds=140)


def test_unlock_forgets_earlier_denials_also_in_a_database_made_before_unlocks(tmp_path):
    path = tmp_path / "faces.db"
    with FaceStore(path) as store:
        for seconds in (0, 10, 20):
            store.log_check("cam:0", "denied", at=NOON + timedelta(seconds=seconds))
    with sqlite3.connect(path) as db:  # as a database of the first schema 1 has it
        db.execute("DROP TABLE unlocks")
    now = NOON + timedelta(seconds=30)
    with FaceStore(path) as store:
        assert store.last_unlock() is None and len(store.recent_denials(60, now=now)) == 3
        store.unlock(at=NOON + timedelta(seconds=15))
        assert store.recent_denials(60, now=now) == [NOON + timedelta(seconds=20)]
        assert store.last_unlock() == NOON + timedelta(seconds=15)
        assert [entry.decision for entry in store.audit()] == ["denied"] * 3  # the log keeps all


def test_opening_without_create_never_makes_a_file_into_a_database(tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    with pytest.raises(InputError) as excinfo:
        FaceStore(empty, create=False)
    assert "not a face database" in one_line_error(excinfo, empty)
    assert empty.read_bytes() == b"" and sorted(tmp_path.iterdir()) == [empty]
