"""The face database: enrolled people, their embeddings, and an audit log of every check.

One SQLite file (default ``$XDG_DATA_HOME/convnet-apps/faces.db``, else
``~/.local/share/convnet-apps/faces.db``; commands take ``--db`` to choose).
Why SQLite and these settings:

- It holds faces and an access log, so the file is created readable by its
  owner only (mode 0600 from the first byte, not chmod-ed afterwards, which
  would leave a window); SQLite gives its ``-wal`` and ``-shm`` side files the
  same mode.
- WAL journal: a door checking faces keeps reading while an administrator
  enrols someone, and readers never block the writer. ``synchronous = NORMAL``
  (per connection): in WAL mode a commit then never corrupts the file and
  survives a crash of the process; only a power cut can lose the last commits.
  With ``FULL`` every audited check waited for an fsync, 3 to 4 ms of a 25 ms
  door check.
- Every write is one transaction taken with ``BEGIN IMMEDIATE`` and a busy
  timeout, so two ``face-enroll`` processes started at once queue for the write
  lock instead of failing or losing rows.
- ``PRAGMA user_version`` records the schema version; a file written by a newer
  version of this program is refused with a clear message rather than misread.
- Only parameterised SQL: names come from users.

Embeddings carry the id of the model that computed them; ``gallery(model_id)``
returns only that model's vectors, because distances between embeddings of two
different models mean nothing. ``stale_people(model_id)`` names the people who
must be enrolled again after a model change.

The API follows ageitgey/face_recognition's taste for short verbs::

    with FaceStore(path) as store:
        store.enroll("ada", vectors, model_id, sources=paths, scores=scores)
        names, matrix, person_of_row = store.gallery(model_id)
        store.log_check("door.jpg", "granted", name="ada", distance=0.31, threshold=0.5)
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from shared.errors import InputError
from shared.files import hash_file

SCHEMA_VERSION = 1
DEFAULT_TIMEOUT_SECONDS = 10.0
DECISIONS = ("granted", "denied", "refused", "error")
MAX_NAME_LENGTH = 200
# Vectors are stored as little-endian float32 whatever the machine, so a database
# file can be copied between computers.
_VECTOR_DTYPE = np.dtype("<f4")

# When ``face-admin unlock`` lifted a lock-out: denials before the latest unlock no longer
# count. A table of its own because the audit table's CHECK admits only check decisions.
# Databases made before it get the table from their first unlock (an addition that older
# versions of the program ignore, so the schema version stays).
_UNLOCKS_TABLE = "CREATE TABLE IF NOT EXISTS unlocks (id INTEGER PRIMARY KEY, time TEXT NOT NULL)"

_SCHEMA = f"""
CREATE TABLE people (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created TEXT NOT NULL
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY,
    person INTEGER NOT NULL REFERENCES people(id) ON DELETE CASCADE,
    vector BLOB NOT NULL,
    model_id TEXT NOT NULL,
    source TEXT,
    source_sha256 TEXT,
    detector TEXT,
    detector_score REAL,
    created TEXT NOT NULL
);
CREATE INDEX embeddings_by_model ON embeddings(model_id, person);
CREATE INDEX embeddings_by_person ON embeddings(person);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    source TEXT,
    decision TEXT NOT NULL CHECK (decision IN {DECISIONS!r}),
    name TEXT,
    distance REAL,
    threshold REAL,
    model_id TEXT,
    reason TEXT
);
CREATE INDEX audit_by_time ON audit(time);
CREATE INDEX audit_by_decision_time ON audit(decision, time);
{_UNLOCKS_TABLE};
PRAGMA user_version = {SCHEMA_VERSION};
"""


def default_db_path() -> Path:
    """Where the database lives when ``--db`` is not given: the user's data directory."""
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "convnet-apps" / "faces.db"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _timestamp(moment: datetime) -> str:
    """Fixed-width UTC ISO text, so that SQL compares times as strings in time order."""
    if moment.tzinfo is None:
        raise ValueError(f"{moment!r} has no time zone; audit times must be aware (UTC)")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Person:
    """One enrolled person as ``face-admin list`` shows them."""

    name: str
    count: int
    model_ids: tuple[str, ...]
    created: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "model_ids": list(self.model_ids),
            "created": _timestamp(self.created),
        }


@dataclass(frozen=True)
class AuditEntry:
    """One check as it was logged: when, on what, the decision and why."""

    time: datetime
    source: str | None
    decision: str
    name: str | None
    distance: float | None
    threshold: float | None
    model_id: str | None
    reason: str | None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "time": _timestamp(self.time)}


class FaceStore:
    """A connection to one face database; use it as a context manager.

    ``path=None`` means ``default_db_path()``, whose folder is created (mode
    0700) if needed. An explicit path's folder must exist, so a mistyped
    ``--db`` is reported rather than silently creating folders. With
    ``create=False`` a missing file is an error, and so is an existing file that
    holds no face database yet (an empty file, a mistyped ``--db photo.jpg``): it is
    never turned into one. ``face-check`` and ``face-admin`` open so: reading a
    database that does not exist must not create one.
    ``timeout`` is how long a write waits for another process's transaction.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
    ) -> None:
        if path is None:
            path = default_db_path()
            if create:
                path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.path = Path(path)
        self.timeout = timeout
        self._create_file(create)
        with self._errors():  # e.g. a file we may not read
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        try:
            with self._errors():
                self._prepare(create)
        except BaseException:
            self._db.close()
            raise

    # --- opening -----------------------------------------------------------------

    @staticmethod
    def check_location(path: str | os.PathLike[str] | None) -> None:
        """InputError if a database could not be opened or created at ``path`` (None: the
        default, whose folder is made when needed); nothing is created."""
        if path is None:
            return
        path = Path(path)
        if path.is_dir():
            raise InputError(f"{path}: is a folder, not a face database file")
        if not path.exists() and not path.parent.is_dir():
            raise InputError(f"{path}: cannot create the database, folder does not exist")

    def _create_file(self, create: bool) -> None:
        """Create an empty file with mode 0600 if there is none (SQLite fills it in)."""
        if not create and not self.path.exists():
            raise InputError(f"{self.path}: no face database here (enrol someone with face-enroll)")
        self.check_location(self.path)
        if self.path.exists():
            return
        # O_CREAT without O_EXCL: a second process creating the same file at the same
        # moment simply opens the empty file too.
        os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))

    def _prepare(self, create: bool) -> None:
        """Check the schema version; lay down the schema in a new file if ``create``.

        An existing database needs no write to open, so a door can start
        checking while someone else holds the write lock.
        """
        self._db.execute("PRAGMA foreign_keys = ON")
        self._db.execute("PRAGMA synchronous = NORMAL")
        version = self._user_version()
        self._check_version(version)
        if version:
            return
        if not create:
            raise InputError(f"{self.path}: not a face database (enrol someone with face-enroll)")
        self._db.execute("PRAGMA journal_mode = WAL")  # stored in the file from now on
        with self._transaction():
            # Checked again under the write lock: another process may have created it.
            version = self._user_version()
            self._check_version(version)
            if version:
                return
            if self._db.execute("SELECT count(*) FROM sqlite_schema").fetchone()[0]:
                raise InputError(
                    f"{self.path}: is a SQLite database of something else, not a face database"
                )
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)

    def _user_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise InputError(
                f"{self.path}: written by a newer version of convnet-apps (schema {version}, "
                f"this one reads up to {SCHEMA_VERSION}); upgrade convnet-apps"
            )

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn SQLite's failures on a bad file or a held lock into one line naming the file."""
        try:
            yield
        except (sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise  # our bug, not the user's file
        except sqlite3.OperationalError as err:
            message = str(err)
            if "locked" in message or "busy" in message:
                raise InputError(
                    f"{self.path}: database is locked by another process "
                    f"(waited {self.timeout:g} s); try again"
                ) from err
            raise InputError(f"{self.path}: cannot use the face database ({message})") from err
        except sqlite3.DatabaseError as err:
            raise InputError(f"{self.path}: not a usable face database ({err})") from err

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, holding the write lock from its start.

        ``BEGIN IMMEDIATE`` takes the lock before reading, so the busy timeout
        applies to it; a deferred transaction that reads and then tries to write
        can fail at once in WAL mode when another writer got in between.
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _rows(self, query: str, parameters: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._errors():
            return self._db.execute(query, parameters).fetchall()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> FaceStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- people and embeddings ---------------------------------------------------

    def enroll(
        self,
        name: str,
        embeddings: np.ndarray | Sequence[np.ndarray],
        model_id: str,
        sources: Sequence[str | os.PathLike[str] | None] | None = None,
        scores: Sequence[float | None] | None = None,
        replace: bool = False,
        digests: Sequence[str | None] | None = None,
        detector: str | None = None,
    ) -> int:
        """Add embeddings for ``name`` (creating the person); return their count for ``model_id``.

        ``sources`` are where each embedding came from (an image path, or a
        label such as ``camera:0``); when ``digests`` is not given, the sha256 of
        each source that is an existing file is recorded, so an audit can tell
        which exact photo enrolled someone. ``detector`` names the face detector
        that found the faces (e.g. ``yunet`` or ``haar``): its ``scores`` mean
        nothing without it. ``replace=True`` first deletes all of the person's
        embeddings (of every model), in the same transaction.
        """
        name = clean_name(name)
        vectors = _as_matrix(embeddings, name)
        count = len(vectors)
        sources = list(sources) if sources is not None else [None] * count
        scores = list(scores) if scores is not None else [None] * count
        if digests is None:
            digests = [_file_digest(source) for source in sources]
        for label, values in (("sources", sources), ("scores", scores), ("digests", digests)):
            if len(values) != count:
                raise ValueError(f"{count} embeddings but {len(values)} {label}")
        now = _timestamp(_utc_now())
        rows = [
            (
                vector.astype(_VECTOR_DTYPE).tobytes(),
                model_id,
                None if source is None else str(source),
                digest,
                detector,
                None if score is None else float(score),
                now,
            )
            for vector, source, score, digest in zip(vectors, sources, scores, digests, strict=True)
        ]
        with self._errors(), self._transaction() as db:
            self._check_dimension(model_id, vectors.shape[1])
            db.execute("INSERT OR IGNORE INTO people (name, created) VALUES (?, ?)", (name, now))
            person = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()[0]
            if replace:
                db.execute("DELETE FROM embeddings WHERE person = ?", (person,))
            db.executemany(
                "INSERT INTO embeddings (person, vector, model_id, source, source_sha256,"
                " detector, detector_score, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(person, *row) for row in rows],
            )
            return db.execute(
                "SELECT count(*) FROM embeddings WHERE person = ? AND model_id = ?",
                (person, model_id),
            ).fetchone()[0]

    def _check_dimension(self, model_id: str, dimension: int) -> None:
        row = self._db.execute(
            "SELECT length(vector) FROM embeddings WHERE model_id = ? LIMIT 1", (model_id,)
        ).fetchone()
        if row is not None and row[0] != dimension * _VECTOR_DTYPE.itemsize:
            raise InputError(
                f"{self.path}: model {model_id} has {row[0] // _VECTOR_DTYPE.itemsize}-d "
                f"embeddings enrolled, these are {dimension}-d"
            )

    def remove(self, name: str) -> int:
        """Delete a person and all their embeddings; return how many embeddings went."""
        with self._errors(), self._transaction() as db:
            row = db.execute("SELECT id FROM people WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise InputError(f"{self.path}: no one named {name!r} is enrolled")
            removed = db.execute("DELETE FROM embeddings WHERE person = ?", row).rowcount
            db.execute("DELETE FROM people WHERE id = ?", row)
            return removed

    def people(self) -> list[Person]:
        """Everyone enrolled, by name, with their embedding count and the models used."""
        rows = self._rows(
            "SELECT p.name, count(e.id), group_concat(DISTINCT e.model_id), p.created"
            " FROM people p LEFT JOIN embeddings e ON e.person = p.id"
            " GROUP BY p.id ORDER BY p.name"
        )
        return [
            Person(
                name=name,
                count=count,
                model_ids=tuple(sorted(models.split(","))) if models else (),
                created=datetime.fromisoformat(created),
            )
            for name, count, models, created in rows
        ]

    def gallery(self, model_id: str) -> tuple[list[str], np.ndarray, np.ndarray]:
        """The enrolled embeddings of one model, ready for matching.

        Returns ``(names, matrix, person_of_row)``: names sorted, a float32
        ``(N, d)`` matrix with each person's rows together, and for each row the
        index of its person in ``names``. Embeddings computed by any other model
        are left out. Rows are read in the order of the model's index and the
        names apart, without a join and its sort: 100,000 embeddings load in
        0.27 s instead of 0.38 s on the development machine.
        """
        rows = self._rows(
            "SELECT person, vector FROM embeddings WHERE model_id = ? ORDER BY person, id",
            (model_id,),
        )
        if not rows:
            return [], np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
        blobs = [blob for _, blob in rows]
        sizes = {len(blob) for blob in blobs}
        if len(sizes) != 1 or next(iter(sizes)) % _VECTOR_DTYPE.itemsize:
            raise InputError(f"{self.path}: corrupt embeddings for model {model_id} (mixed sizes)")
        matrix = np.frombuffer(b"".join(blobs), _VECTOR_DTYPE).reshape(len(rows), -1)
        person_ids = np.fromiter((person for person, _ in rows), np.int64, len(rows))
        enrolled = np.unique(person_ids)
        name_of = dict(self._rows("SELECT id, name FROM people"))
        names = [name_of[int(person)] for person in enrolled]
        alphabetical = np.argsort(names, kind="stable")
        rank = np.empty_like(alphabetical)
        rank[alphabetical] = np.arange(len(names))
        person_of_row = rank[np.searchsorted(enrolled, person_ids)]
        return [names[i] for i in alphabetical], matrix.astype(np.float32), person_of_row

    def model_ids(self) -> list[str]:
        """The models whose embeddings this database holds, sorted (one, normally)."""
        return [m for (m,) in self._rows("SELECT DISTINCT model_id FROM embeddings ORDER BY 1")]

    def stale_people(self, model_id: str) -> list[str]:
        """People enrolled only under other models: they must enrol again to be recognised."""
        rows = self._rows(
            "SELECT p.name FROM people p JOIN embeddings e ON e.person = p.id"
            " GROUP BY p.id HAVING sum(e.model_id = ?) = 0 ORDER BY p.name",
            (model_id,),
        )
        return [name for (name,) in rows]

    # --- per-model settings -------------------------------------------------------

    def set_threshold(
        self, model_id: str, threshold: float, *, far: float | None = None, note: str | None = None
    ) -> None:
        """Make ``threshold`` this database's door threshold for ``model_id`` embeddings.

        ``face-eval --recommend-threshold --db`` writes it (with the FAR it was chosen
        for and a note on what it rests on); ``face-check`` uses it unless ``--threshold``
        is given. Thresholds belong to a model: distances of two models are not comparable.
        The table is created on first use, so older databases open unchanged and older
        versions of the program simply ignore it.
        """
        if not np.isfinite(threshold) or threshold <= 0:
            raise InputError(f"a threshold must be a positive number, got {threshold}")
        with self._errors(), self._transaction() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS thresholds (model_id TEXT PRIMARY KEY,"
                " threshold REAL NOT NULL, far REAL, note TEXT, created TEXT NOT NULL)"
            )
            db.execute(
                "INSERT OR REPLACE INTO thresholds (model_id, threshold, far, note, created)"
                " VALUES (?, ?, ?, ?, ?)",
                (model_id, float(threshold), far, note, _timestamp(_utc_now())),
            )

    def threshold(self, model_id: str) -> float | None:
        """The threshold stored for ``model_id`` by ``set_threshold``, or None."""
        exists = self._rows(
            "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'thresholds'"
        )
        if not exists:
            return None
        rows = self._rows("SELECT threshold FROM thresholds WHERE model_id = ?", (model_id,))
        return float(rows[0][0]) if rows else None

    # --- audit log ---------------------------------------------------------------

    def log_check(
        self,
        source: str | os.PathLike[str] | None,
        decision: str,
        name: str | None = None,
        distance: float | None = None,
        threshold: float | None = None,
        model_id: str | None = None,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record one check. ``at`` (aware) replaces the current time, for tests and replays."""
        if decision not in DECISIONS:
            raise ValueError(f"decision must be one of {DECISIONS}, not {decision!r}")
        row = (
            _timestamp(at or _utc_now()),
            None if source is None else str(source),
            decision,
            name,
            None if distance is None else float(distance),
            None if threshold is None else float(threshold),
            model_id,
            reason,
        )
        with self._errors(), self._transaction() as db:
            db.execute(
                "INSERT INTO audit (time, source, decision, name, distance, threshold,"
                " model_id, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )

    def audit(self, since: datetime | None = None) -> list[AuditEntry]:
        """Logged checks in time order, all of them or those at or after ``since``."""
        query = (
            "SELECT time, source, decision, name, distance, threshold, model_id, reason FROM audit"
        )
        parameters: tuple[str, ...] = ()
        if since is not None:
            query += " WHERE time >= ?"
            parameters = (_timestamp(since),)
        rows = self._rows(query + " ORDER BY time, id", parameters)
        return [AuditEntry(datetime.fromisoformat(row[0]), *row[1:]) for row in rows]

    def recent_denials(self, window_seconds: float, now: datetime | None = None) -> list[datetime]:
        """Times of the denied checks in the last ``window_seconds``, oldest first.

        Kept in the database rather than in memory so a lockout after repeated
        denials holds across separate ``face-check`` processes.
        """
        now = now or _utc_now()
        start = now - timedelta(seconds=window_seconds)
        unlocked = self.last_unlock()
        if unlocked is not None and unlocked > start:
            start = unlocked
        rows = self._rows(
            "SELECT time FROM audit WHERE decision = 'denied' AND time > ? AND time <= ?"
            " ORDER BY time",
            (_timestamp(start), _timestamp(now)),
        )
        return [datetime.fromisoformat(time) for (time,) in rows]

    def unlock(self, at: datetime | None = None) -> None:
        """Lift any lock-out: denials up to now (or ``at``) no longer count towards one."""
        with self._errors(), self._transaction() as db:
            db.execute(_UNLOCKS_TABLE)
            db.execute("INSERT INTO unlocks (time) VALUES (?)", (_timestamp(at or _utc_now()),))

    def last_unlock(self) -> datetime | None:
        """When the lock-out was last lifted by ``unlock``, or None."""
        if not self._rows("SELECT 1 FROM sqlite_schema WHERE name = 'unlocks'"):
            return None  # a database from before unlocking existed, never unlocked
        (time,) = self._rows("SELECT max(time) FROM unlocks")[0]
        return None if time is None else datetime.fromisoformat(time)


def clean_name(name: str) -> str:
    """The name as stored (stripped), or InputError; callers check it before costly work."""
    cleaned = name.strip()
    if not cleaned:
        raise InputError("a person's name cannot be empty")
    if len(cleaned) > MAX_NAME_LENGTH:
        raise InputError(f"name {cleaned[:20]!r}... is longer than {MAX_NAME_LENGTH} characters")
    if not cleaned.isprintable():
        raise InputError(f"name {cleaned!r} contains control characters")
    return cleaned


def _as_matrix(embeddings: np.ndarray | Sequence[np.ndarray], name: str) -> np.ndarray:
    vectors = np.asarray(embeddings, dtype=np.float32)
    if vectors.ndim == 1:
        vectors = vectors[np.newaxis]
    if vectors.ndim != 2 or vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise ValueError(
            f"embeddings for {name!r} must be a non-empty (N, d) array, got {vectors.shape}"
        )
    if not np.isfinite(vectors).all():
        raise ValueError(f"embeddings for {name!r} contain NaN or infinity")
    return vectors


def _file_digest(source: str | os.PathLike[str] | None) -> str | None:
    if source is None or not os.path.isfile(source):
        return None
    return hash_file(source)
