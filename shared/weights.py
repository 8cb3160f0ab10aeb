"""Finding model weights: one catalogue, one resolver, one clear message when offline.

The catalogue is ``data/weights.tsv`` (installed as ``convnet_apps_data``): one
row per file with its model name, URL, digest, size and licence. The digest is
bare hex for sha256, or ``sha512:<hex>`` when the only trustworthy public record
of a file is a sha512 (YOLOv2's weights, pinned by vcpkg; they cannot be
downloaded here to compute a sha256). A file is looked for, in this order:

1. an explicit path given by the user (a command's weights option), used as
   given: it may be the user's own trained weights, so it is not checked
   against the catalogue;
2. the folder named by ``$CONVNET_APPS_WEIGHTS_DIR``, searched by file name in
   all its subfolders;
3. Python packages that ship the file (``face_recognition_models`` carries the
   dlib models); located with ``importlib.util.find_spec`` without importing
   them, because that package imports ``pkg_resources``, which new setuptools
   no longer provides;
4. the cache: ``$CONVNET_APPS_CACHE/weights/`` (default
   ``$XDG_CACHE_HOME/convnet-apps`` or ``~/.cache/convnet-apps``);
5. a download from the catalogue URL (progress bar on a terminal), checked
   against the digest and size, then renamed atomically into the cache.

Files found in steps 2-4 are checked against the catalogue's size and digest;
a mismatch is an error naming the file, never a silent fallback. Hashing a
large file on every start would be slow, so digests are remembered, per
algorithm, in ``<cache>/digests.json`` keyed by the file's path, size and
modification time; replacing or touching the file makes it be hashed again.
"""

from __future__ import annotations

import glob
import hashlib
import http.client
import importlib.util
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from shared.errors import InputError, WeightsError
from shared.files import atomic_output, hash_file

ENV_WEIGHTS_DIR = "CONVNET_APPS_WEIGHTS_DIR"
ENV_CACHE = "CONVNET_APPS_CACHE"

# Packages searched (by file name, below their folder) for files they ship.
SHIPPING_PACKAGES: tuple[str, ...] = ("face_recognition_models",)

DOWNLOAD_TIMEOUT_SECONDS = 30
_CATALOGUE_COLUMNS = ["name", "file", "url", "digest", "size", "license"]
DIGEST_ALGORITHMS = ("sha256", "sha512")


@dataclass(frozen=True)
class Digest:
    """A file's expected digest: the hashlib algorithm name and the lowercase hex value."""

    algorithm: str
    hex: str


@dataclass(frozen=True)
class CatalogueEntry:
    """One file of a model as listed in ``data/weights.tsv``."""

    model: str
    file: str
    url: str
    digest: Digest | None
    size: int | None
    license: str


def parse_digest(text: str) -> Digest | None:
    """A catalogue digest cell: empty (None), bare hex (sha256) or ``<algorithm>:<hex>``.

    Raises ``ValueError`` for an unknown algorithm or a value of the wrong length, so a typo
    in the catalogue fails when it is read rather than as a mismatch on every user's file.
    """
    text = text.strip().lower()
    if not text:
        return None
    algorithm, _, value = text.rpartition(":")
    algorithm = algorithm or "sha256"
    if algorithm not in DIGEST_ALGORITHMS:
        raise ValueError(f"digest algorithm {algorithm!r} not supported ({DIGEST_ALGORITHMS})")
    length = 2 * hashlib.new(algorithm).digest_size
    if len(value) != length or value.strip("0123456789abcdef"):
        raise ValueError(f"a {algorithm} digest is {length} hex digits, got {value!r}")
    return Digest(algorithm, value)


def catalogue_text() -> str:
    """The catalogue as shipped with the package (tests replace this loader)."""
    return resources.files("convnet_apps_data").joinpath("weights.tsv").read_text("utf-8")


def parse_catalogue(text: str) -> dict[str, list[CatalogueEntry]]:
    """Parse the TSV (``#`` comment lines, then a header row) into model -> files."""
    rows = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    if not rows or rows[0].split("\t") != _CATALOGUE_COLUMNS:
        raise ValueError(f"weights catalogue header must be {_CATALOGUE_COLUMNS}")
    models: dict[str, list[CatalogueEntry]] = {}
    for number, line in enumerate(rows[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(_CATALOGUE_COLUMNS):
            raise ValueError(f"weights catalogue row {number} has {len(fields)} columns: {line!r}")
        name, file, url, digest, size, license_ = (field.strip() for field in fields)
        try:
            expected = parse_digest(digest)
        except ValueError as err:
            raise ValueError(f"weights catalogue row {number} ({file}): {err}") from None
        entry = CatalogueEntry(name, file, url, expected, int(size) if size else None, license_)
        models.setdefault(name, []).append(entry)
    return models


def catalogue() -> dict[str, list[CatalogueEntry]]:
    """Every catalogued model and its files."""
    return parse_catalogue(catalogue_text())


def cache_dir() -> Path:
    """Root of everything this project caches (downloads, converted models, digests)."""
    configured = os.environ.get(ENV_CACHE)
    if configured:
        return Path(configured).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "convnet-apps"


def weights_cache_dir() -> Path:
    """Where downloaded weights live, and where a user may place files by hand."""
    return cache_dir() / "weights"


# --- remembered digests ------------------------------------------------------------------


def _memo_path() -> Path:
    return cache_dir() / "digests.json"


def _load_memo() -> dict[str, dict]:
    try:
        memo = json.loads(_memo_path().read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _file_stamp(path: Path) -> list[int]:
    status = path.stat()
    return [status.st_size, status.st_mtime_ns]


def _remembered(memo: dict[str, dict], path: Path) -> dict[str, str]:
    """The digests remembered for ``path`` (algorithm -> hex), if it has not changed since."""
    record = memo.get(str(path.resolve()))
    if not isinstance(record, dict) or record.get("stamp") != _file_stamp(path):
        return {}
    return dict(record.get("digests", {}))


def _remember_digest(path: Path, algorithm: str, digest: str) -> None:
    """Best effort: a read-only cache only means files are hashed again next time."""
    memo = _load_memo()
    digests = _remembered(memo, path) | {algorithm: digest}
    memo[str(path.resolve())] = {"stamp": _file_stamp(path), "digests": digests}
    try:
        _memo_path().parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(_memo_path()) as temp:
            temp.write_text(json.dumps(memo, indent=0, sort_keys=True), "utf-8")
    except (OSError, InputError):
        pass


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Digest of ``path``, reusing the remembered one while its size and mtime are unchanged."""
    remembered = _remembered(_load_memo(), path).get(algorithm)
    if remembered:
        return remembered
    digest = hash_file(path, algorithm)
    _remember_digest(path, algorithm, digest)
    return digest


# --- the resolver ------------------------------------------------------------------------


def _entry(model: str, filename: str) -> CatalogueEntry | None:
    for entry in catalogue().get(model, []):
        if entry.file == filename:
            return entry
    return None


def _find_by_name(root: Path, filename: str) -> Path | None:
    """The least deeply nested file called ``filename`` below ``root`` (ties broken by path)."""
    matches = [path for path in root.rglob(glob.escape(filename)) if path.is_file()]
    return min(matches, key=lambda path: (len(path.parts), str(path)), default=None)


def _find_in_weights_dir(filename: str) -> Path | None:
    configured = os.environ.get(ENV_WEIGHTS_DIR)
    if not configured:
        return None
    root = Path(configured).expanduser()
    if not root.is_dir():
        raise WeightsError(f"{ENV_WEIGHTS_DIR}={configured} is not a folder")
    return _find_by_name(root, filename)


def _find_in_packages(filename: str) -> Path | None:
    for package in SHIPPING_PACKAGES:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            continue
        for location in (spec.submodule_search_locations or []) if spec else []:
            found = _find_by_name(Path(location), filename)
            if found is not None:
                return found
    return None


def _verify(entry: CatalogueEntry, path: Path) -> None:
    """Raise ``WeightsError`` if ``path`` is not the catalogued file (size first: it is free)."""
    advice = f"delete or replace it (the right file is at {entry.url})"
    size = path.stat().st_size
    if entry.size is not None and size != entry.size:
        raise WeightsError(
            f"{path}: {size} bytes but {entry.file} has {entry.size}; it is truncated, corrupt "
            f"or another version: {advice}"
        )
    if entry.digest is not None:
        algorithm, expected = entry.digest.algorithm, entry.digest.hex
        actual = file_digest(path, algorithm)
        if actual != expected:
            raise WeightsError(
                f"{path}: {algorithm} {actual[:16]}… does not match {expected[:16]}… of "
                f"{entry.file}; it is corrupt or another version: {advice}"
            )


def _not_found(
    model: str, filename: str, entry: CatalogueEntry | None, reason: str
) -> WeightsError:
    source = f"; it can be downloaded from {entry.url}" if entry is not None and entry.url else ""
    return WeightsError(
        f"weights file {filename} (model {model}) not found and {reason}. Provide it: set "
        f"{ENV_WEIGHTS_DIR} to a folder containing it, or place it at "
        f"{weights_cache_dir() / filename}{source}"
    )


class _Unreachable(Exception):
    """The download failed for a network reason (offline, refused, HTTP error, cut short)."""


def _fetch(
    url: str, destination: Path, expected_size: int | None, label: str, algorithm: str
) -> str:
    """Stream ``url`` into ``destination``; return the ``algorithm`` digest of the bytes."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "convnet-apps"})
    digest = hashlib.new(algorithm)
    try:
        response = urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_SECONDS)
    except urllib.error.HTTPError as err:
        raise _Unreachable(f"HTTP {err.code} {err.reason}") from err
    except (OSError, http.client.HTTPException) as err:  # URLError is an OSError
        raise _Unreachable(str(getattr(err, "reason", err))) from err
    with (
        response,
        open(destination, "wb") as output,
        tqdm(
            total=expected_size,
            desc=label,
            unit="B",
            unit_scale=True,
            disable=not sys.stderr.isatty(),
            leave=False,
        ) as bar,
    ):
        while True:
            try:
                chunk = response.read(1 << 20)
            except (OSError, http.client.HTTPException) as err:
                raise _Unreachable(f"connection lost: {err}") from err
            if not chunk:
                break
            output.write(chunk)
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _download(entry: CatalogueEntry) -> Path:
    # Hash with the catalogued algorithm; without one, a sha256 is still worth remembering.
    algorithm = entry.digest.algorithm if entry.digest is not None else "sha256"
    target = weights_cache_dir() / entry.file
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise WeightsError(
            f"{target.parent}: cannot create the weights cache ({err.strerror}); "
            f"set {ENV_CACHE} to a writable folder"
        ) from err
    try:
        with atomic_output(target) as temp:
            digest = _fetch(entry.url, temp, entry.size, entry.file, algorithm)
            size = temp.stat().st_size
            if entry.size is not None and size != entry.size:
                raise WeightsError(
                    f"{entry.url}: downloaded {size} bytes but {entry.file} has {entry.size}; "
                    "nothing was saved"
                )
            if entry.digest is not None and digest != entry.digest.hex:
                raise WeightsError(
                    f"{entry.url}: downloaded {entry.file} has {algorithm} {digest[:16]}… "
                    f"instead of {entry.digest.hex[:16]}…; nothing was saved"
                )
    except _Unreachable as err:
        raise _not_found(entry.model, entry.file, entry, f"the download failed ({err})") from err
    _remember_digest(target, algorithm, digest)
    return target


def locate_file(model: str, filename: str) -> Path | None:
    """The verified local copy of a weights file, or None; never downloads.

    Steps 2-4 of the module docstring, without the download: for callers that must stay
    offline, e.g. a test that runs only where a large file has been provided. A local copy
    that fails verification is a ``WeightsError``, not None.
    """
    found = _find_in_weights_dir(filename) or _find_in_packages(filename)
    if found is None and (weights_cache_dir() / filename).is_file():
        found = weights_cache_dir() / filename
    entry = _entry(model, filename)
    if found is not None and entry is not None:
        _verify(entry, found)
    return found


def resolve_file(model: str, filename: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """Path of one weights file, found or downloaded as described in the module docstring.

    ``filename`` need not be catalogued (e.g. a Darknet cfg a user keeps in the
    weights folder): such files are found by name but cannot be checked or
    downloaded. Raises ``WeightsError`` with one line naming the file, the places
    to put it and its URL.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"{path}: no such weights file (given for {filename})")
        return path
    found = locate_file(model, filename)
    if found is not None:
        return found
    entry = _entry(model, filename)
    if entry is None or not entry.url:
        raise _not_found(model, filename, entry, "it has no download address in the catalogue")
    return _download(entry)


def resolve_model(
    model: str, explicit: Mapping[str, str | os.PathLike[str]] | None = None
) -> dict[str, Path]:
    """Paths of all catalogued files of ``model`` (filename -> path); ``explicit`` by filename."""
    entries = catalogue().get(model)
    if not entries:
        known = ", ".join(sorted(catalogue()))
        raise WeightsError(f"unknown model {model!r}; the catalogue has: {known}")
    explicit = explicit or {}
    return {
        entry.file: resolve_file(model, entry.file, explicit.get(entry.file)) for entry in entries
    }
