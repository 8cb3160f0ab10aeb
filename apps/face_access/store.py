"""The face database: people, their embeddings, and an audit log of every check (SQLite).

- One file, created with mode 0600 (it holds biometric data) in a 0700 folder; SQLite gives
  its -wal and -shm companions the same mode.
- WAL journal: door checks read while an enrolment writes. Every write is one
  ``BEGIN IMMEDIATE`` transaction, and a busy database is waited for (``timeout``), so two
  ``face-enroll`` processes at once both land, one after the other, and nothing is lost.
- Parameterised SQL only; names and paths never become SQL text.
- Each embedding carries the id of the model that made it. Vectors of another model are
  never compared with the current one; ``stale_people`` lists whom to re-enrol.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.errors import InputError

ENV_DB = "CONVNET_APPS_FACE_DB"
SCHEMA_VERSION = 1
DEFAULT_TIMEOUT_SECONDS = 10.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS embeddings (
    id INTEGER PRIMARY KEY,
    person_id INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    model_id TEXT NOT NULL,
    vector BLOB NOT NULL,
    source TEXT NOT NULL,
    source_sha256 TEXT NOT NULL,
    detector TEXT NOT NULL,
    detector_score REAL NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS embeddings_by_model ON embeddings(model_id, person_id);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    time REAL NOT NULL,
    source TEXT NOT NULL,
    decision TEXT NOT NULL,
    name TEXT,
    distance REAL,
    threshold REAL,
    model_id TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS audit_by_time ON audit(time);
"""


def default_db_path() -> Path:
    """``$CONVNET_APPS_FACE_DB``, else ``$XDG_DATA_HOME/convnet-apps/faces.db``
    (``~/.local/share/convnet-apps/faces.db``)."""
    if os.environ.get(ENV_DB):
        return Path(os.environ[ENV_DB])
    data_home = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data_home) / "convnet-apps" / "faces.db"


@dataclass(frozen=True)
class Enrolment:
    """One embedding to store, with where it came from."""

    vector: np.ndarray
    source: str
    source_sha256: str
    detector: str
    detector_score: float


@dataclass(frozen=True)
class PersonSummary:
    name: str
    embeddings: int
    model_ids: tuple[str, ...]
    created: float


class FaceStore:
    """An open face database. Use as a context manager; ``path`` is created if absent."""

    def __init__(self, path: str | os.PathLike[str], timeout: float = DEFAULT_TIMEOUT_SECONDS):
        self.path = Path(path)
        self.timeout = timeout
        if self.path.is_dir():
            raise InputError(f"{self.path}: is a folder, expected a face database file")
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Create the file ourselves so it never exists with looser permissions.
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o600))
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self._run(self._setup)
        except sqlite3.Error as err:
            if hasattr(self, "_db"):
                self._db.close()
            raise self._error(err) from err

    def _setup(self) -> None:
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA journal_mode = WAL")
        # In WAL mode NORMAL still survives a crash of the process; only a power cut can lose
        # the last commits. It saves an fsync per check, which would dominate a door check.
        self._db.execute("PRAGMA synchronous = NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise InputError(f"{self.path}: made by a newer version (schema {version})")
        try:
            self._db.executescript(
                f"BEGIN IMMEDIATE; {_SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            )
        except sqlite3.Error:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(embeddings)")}
        if "model_id" not in columns or "vector" not in columns:
            raise InputError(f"{self.path}: not a face database (unexpected tables)")

    def _error(self, err: sqlite3.Error) -> InputError:
        message = str(err)
        if "locked" in message or "busy" in message:
            return InputError(
                f"{self.path}: database is locked by another process (waited {self.timeout:g} s)"
            )
        if isinstance(err, sqlite3.DatabaseError) and "not a database" in message:
            return InputError(f"{self.path}: not a face database (file is corrupt or another kind)")
        return InputError(f"{self.path}: database error: {message}")

    def _run(self, action, *args):
        """Call ``action`` turning SQLite failures into one-line InputErrors."""
        try:
            return action(*args)
        except sqlite3.Error as err:
            raise self._error(err) from err

    def _transaction(self):
        return _Transaction(self._db)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FaceStore:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- people and embeddings ------------------------------------------------------------

    def enrol(self, name: str, records: Iterable[Enrolment], model_id: str, replace: bool = False):
        """Add ``records`` to ``name`` (created if new) in one transaction; returns their count.

        ``replace`` first removes everything stored for ``name``, in the same transaction, so
        a failure leaves the previous enrolment intact.
        """
        records = list(records)
        now = time.time()

        def write() -> None:
            with self._transaction():
                if replace:
                    self._db.execute("DELETE FROM people WHERE name = ?", (name,))
                self._db.execute(
                    "INSERT OR IGNORE INTO people(name, created) VALUES (?, ?)", (name, now)
                )
                (person_id,) = self._db.execute(
                    "SELECT id FROM people WHERE name = ?", (name,)
                ).fetchone()
                self._db.executemany(
                    "INSERT INTO embeddings(person_id, model_id, vector, source, source_sha256,"
                    " detector, detector_score, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [
                        (
                            person_id,
                            model_id,
                            np.asarray(r.vector, "<f4").tobytes(),
                            r.source,
                            r.source_sha256,
                            r.detector,
                            float(r.detector_score),
                            now,
                        )
                        for r in records
                    ],
                )

        self._run(write)
        return len(records)

    def remove(self, name: str) -> bool:
        """Forget ``name`` and all their embeddings; False if there was no such person."""

        def delete() -> bool:
            with self._transaction():
                return self._db.execute("DELETE FROM people WHERE name = ?", (name,)).rowcount > 0

        return self._run(delete)

    def people(self) -> list[PersonSummary]:
        rows = self._run(
            self._db.execute,
            "SELECT p.name, p.created, COUNT(e.id), GROUP_CONCAT(DISTINCT e.model_id)"
            " FROM people p LEFT JOIN embeddings e ON e.person_id = p.id"
            " GROUP BY p.id ORDER BY p.name",
        ).fetchall()
        return [
            PersonSummary(name, count, tuple(sorted(models.split(","))) if models else (), created)
            for name, created, count, models in rows
        ]

    def gallery(self, model_id: str) -> tuple[list[str], np.ndarray]:
        """Names and vectors (N, 128) of every embedding made by ``model_id``."""
        rows = self._run(
            self._db.execute,
            "SELECT p.name, e.vector FROM embeddings e JOIN people p ON p.id = e.person_id"
            " WHERE e.model_id = ? ORDER BY p.name, e.id",
            (model_id,),
        ).fetchall()
        vectors = np.frombuffer(b"".join(row[1] for row in rows), "<f4").reshape(-1, 128)
        return [row[0] for row in rows], vectors

    def stale_people(self, model_id: str) -> list[str]:
        """People with embeddings, none of them from ``model_id``: they need re-enrolment."""
        rows = self._run(
            self._db.execute,
            "SELECT p.name FROM people p JOIN embeddings e ON e.person_id = p.id"
            " GROUP BY p.id HAVING SUM(e.model_id = ?) = 0 ORDER BY p.name",
            (model_id,),
        ).fetchall()
        return [row[0] for row in rows]

    # --- audit ----------------------------------------------------------------------------

    def audit(
        self,
        source: str,
        decision: str,
        name: str | None = None,
        distance: float | None = None,
        threshold: float | None = None,
        model_id: str | None = None,
        detail: str | None = None,
        at: float | None = None,
    ) -> None:
        """Log one check (``decision``: granted, denied, error, or refused during a lock-out)."""

        def write() -> None:
            with self._transaction():
                self._db.execute(
                    "INSERT INTO audit(time, source, decision, name, distance, threshold,"
                    " model_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        time.time() if at is None else at,
                        source,
                        decision,
                        name,
                        distance,
                        threshold,
                        model_id,
                        detail,
                    ),
                )

        self._run(write)

    def audit_log(self, since: float | None = None) -> list[dict]:
        rows = self._run(
            self._db.execute,
            "SELECT time, source, decision, name, distance, threshold, model_id, detail"
            " FROM audit WHERE time >= ? ORDER BY time, id",
            (since or 0.0,),
        ).fetchall()
        keys = ("time", "source", "decision", "name", "distance", "threshold", "model_id", "detail")
        return [dict(zip(keys, row, strict=True)) for row in rows]

    def denial_times(self, since: float) -> list[float]:
        """Times of the 'denied' checks from ``since`` on, oldest first."""
        rows = self._run(
            self._db.execute,
            "SELECT time FROM audit WHERE decision = 'denied' AND time >= ? ORDER BY time",
            (since,),
        ).fetchall()
        return [row[0] for row in rows]


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on error): takes the write lock up
    front, so a concurrent writer waits for the busy timeout instead of failing mid-way."""

    def __init__(self, db: sqlite3.Connection):
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, exc, tb) -> None:
        self._db.execute("ROLLBACK" if exc_type else "COMMIT")
