"""The SQLite face store: permissions, WAL, transactions, model ids, and bad databases."""

from __future__ import annotations

import multiprocessing
import sqlite3
import stat

import numpy as np
import pytest

from apps.face_access.store import Enrolment, FaceStore
from shared.errors import InputError

MODEL = "model-a"


def _records(count: int, seed: int = 0, source: str = "img") -> list[Enrolment]:
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, 128)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return [
        Enrolment(v, f"{source}{i}.jpg", f"{i:064x}", "yunet", 0.9) for i, v in enumerate(vectors)
    ]


def test_new_database_is_private_and_in_wal_mode(tmp_path):
    path = tmp_path / "nested" / "faces.db"
    with FaceStore(path) as store:
        store.enrol("alice", _records(1), MODEL)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_vectors_round_trip_and_names_are_data_not_sql(tmp_path):
    tricky = "Robert'); DROP TABLE people;--"
    records = _records(3)
    with FaceStore(tmp_path / "f.db") as store:
        store.enrol(tricky, records, MODEL)
        store.enrol("bob", _records(2, seed=1), MODEL)
        names, vectors = store.gallery(MODEL)
        assert names == ["Robert'); DROP TABLE people;--"] * 3 + ["bob"] * 2
        np.testing.assert_array_equal(vectors[:3], np.stack([r.vector for r in records]))
        assert [(p.name, p.embeddings) for p in store.people()] == [(tricky, 3), ("bob", 2)]


def test_replace_and_remove(tmp_path):
    with FaceStore(tmp_path / "f.db") as store:
        store.enrol("alice", _records(3), MODEL)
        store.enrol("alice", _records(2, seed=5), MODEL)
        assert store.people()[0].embeddings == 5
        store.enrol("alice", _records(1, seed=6), MODEL, replace=True)
        assert store.people()[0].embeddings == 1
        assert store.remove("alice") is True and store.remove("alice") is False
        assert store.people() == [] and store.gallery(MODEL)[1].shape == (0, 128)


def test_other_models_are_kept_apart_and_named_for_re_enrolment(tmp_path):
    with FaceStore(tmp_path / "f.db") as store:
        store.enrol("alice", _records(2), MODEL)
        store.enrol("bob", _records(2, seed=1), "model-old")
        store.enrol("carol", _records(1, seed=2), "model-old")
        store.enrol("carol", _records(1, seed=3), MODEL)
        assert store.gallery(MODEL)[0] == ["alice", "alice", "carol"]
        assert store.stale_people(MODEL) == ["bob"]


def test_audit_log_and_denial_times(tmp_path):
    with FaceStore(tmp_path / "f.db") as store:
        store.audit("a.jpg", "granted", "alice", 0.2, 0.33, MODEL, "match", at=100.0)
        store.audit("b.jpg", "denied", "alice", 0.5, 0.33, MODEL, "too far", at=110.0)
        store.audit("c.jpg", "error", detail="c.jpg: no face found", at=120.0)
        assert [e["source"] for e in store.audit_log()] == ["a.jpg", "b.jpg", "c.jpg"]
        assert [e["decision"] for e in store.audit_log(since=105.0)] == ["denied", "error"]
        assert store.denial_times(0.0) == [110.0]


def test_corrupt_file_and_folder_are_one_line_errors(tmp_path):
    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError, match=r"corrupt\.db: not a face database"):
        FaceStore(corrupt)
    with pytest.raises(InputError, match="is a folder"):
        FaceStore(tmp_path)


def test_locked_database_is_reported_after_the_timeout(tmp_path):
    path = tmp_path / "f.db"
    store = FaceStore(path, timeout=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(InputError, match=r"f\.db: database is locked .*0\.2 s"):
            store.enrol("alice", _records(1), MODEL)
        with pytest.raises(InputError, match="locked"):
            FaceStore(path, timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    store.enrol("alice", _records(1), MODEL)  # the lock is gone, so is the error
    assert store.people()[0].embeddings == 1
    store.close()


def _enrol_many(path: str, name: str, seed: int) -> None:
    with FaceStore(path) as store:
        for batch in range(10):
            store.enrol(name, _records(3, seed=seed * 100 + batch), MODEL)


def test_two_processes_enrolling_at_once_lose_nothing(tmp_path):
    path = str(tmp_path / "f.db")
    FaceStore(path).close()
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_enrol_many, args=(path, n, s)) for s, n in enumerate("ab")]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0]
    with FaceStore(path) as store:
        assert [(p.name, p.embeddings) for p in store.people()] == [("a", 30), ("b", 30)]
