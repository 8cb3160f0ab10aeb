"""Finding model weights: one catalogue, one resolver, one clear message when offline.

The catalogue is ``data/weights.tsv`` (installed as ``convnet_apps_data``): one
row per file with its model name, URL, sha256, size and licence. A file is
looked for, in this order:

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
   against the sha256 and size, then renamed atomically into the cache.

Files found in steps 2-4 are checked against the catalogue's size and sha256;
a mismatch is an error naming the file, never a silent fallback. Hashing a
large file on every start would be slow, so a verified digest is remembered in
``<cache>/sha256.json`` keyed by the file's path, size and modification time;
replacing or touching the file makes it be hashed again.
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
from shared.files import atomic_output, sha256_file

ENV_WEIGHTS_DIR = "CONVNET_APPS_WEIGHTS_DIR"
ENV_CACHE = "CONVNET_APPS_CACHE"

# Packages searched (by file name, below their folder) for files they ship.
SHIPPING_PACKAGES: tuple[str, ...] = ("face_recognition_models",)

DOWNLOAD_TIMEOUT_SECONDS = 30
_CATALOGUE_COLUMNS = ["name", "file", "url", "sha256", "size", "license"]


@dataclass(frozen=True)
class CatalogueEntry:
    """One file of a model as listed in ``data/weights.tsv``."""

    model: str
    file: str
    url: str
    sha256: str | None
    size: int | None
    license: str


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
        name, file, url, sha256, size, license_ = (field.strip() for field in fields)
        entry = CatalogueEntry(
            name, file, url, sha256.lower() or None, int(size) if size else None, license_
        )
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
    return cache_dir() / "sha256.json"


def _load_memo() -> dict[str, list]:
    try:
        memo = json.loads(_memo_path().read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return memo if isinstance(memo, dict) else {}


def _file_stamp(path: Path) -> list[int]:
    status = path.stat()
    return [status.st_size, status.st_mtime_ns]


def _remember_digest(path: Path, digest: str) -> None:
    """Best effort: a read-only cache only means files are hashed again next time."""
    memo = _load_memo()
    memo[str(path.resolve())] = [*_file_stamp(path), digest]
    try:
        _memo_path().parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(_memo_path()) as temp:
            temp.write_text(json.dumps(memo, indent=0, sort_keys=True), "utf-8")
    except (OSError, InputError):
        pass


def file_sha256(path: Path) -> str:
    """sha256 of ``path``, reusing the remembered digest while its size and mtime are unchanged."""
    remembered = _load_memo().get(str(path.resolve()))
    if remembered and remembered[:2] == _file_stamp(path):
        return remembered[2]
    digest = sha256_file(path)
    _remember_digest(path, digest)
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
    if entry.sha256 is not None:
        actual = file_sha256(path)
        if actual != entry.sha256:
            raise WeightsError(
                f"{path}: sha256 {actual[:16]}… does not match {entry.sha256[:16]}… of "
                f"{entry.file}; it is corrupt or another version: {advice}"
            )


def _not_found(
    model: str, filename: str, entry: CatalogueEntry | None, reason: str
) -> WeightsError:
    source = f"; it can be downloaded from {entry.url}" if entry is not None and entry.url else ""
    return WeightsError(
        f"weights file {filename} (model {model}) not found and {reason}. Provide it in one of "
        f"three ways: pass its path with the command's weights option, set {ENV_WEIGHTS_DIR} to "
        f"a folder containing it, or place it at {weights_cache_dir() / filename}{source}"
    )


class _Unreachable(Exception):
    """The download failed for a network reason (offline, refused, HTTP error, cut short)."""


def _fetch(url: str, destination: Path, expected_size: int | None, label: str) -> str:
    """Stream ``url`` into ``destination``; return the sha256 of the bytes received."""
    from tqdm import tqdm

    request = urllib.request.Request(url, headers={"User-Agent": "convnet-apps"})
    digest = hashlib.sha256()
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
            digest = _fetch(entry.url, temp, entry.size, entry.file)
            size = temp.stat().st_size
            if entry.size is not None and size != entry.size:
                raise WeightsError(
                    f"{entry.url}: downloaded {size} bytes but {entry.file} has {entry.size}; "
                    "nothing was saved"
                )
            if entry.sha256 is not None and digest != entry.sha256:
                raise WeightsError(
                    f"{entry.url}: downloaded {entry.file} has sha256 {digest[:16]}… instead of "
                    f"{entry.sha256[:16]}…; nothing was saved"
                )
    except _Unreachable as err:
        raise _not_found(entry.model, entry.file, entry, f"the download failed ({err})") from err
    _remember_digest(target, digest)
    return target


def resolve_file(model: str, filename: str, explicit: str | os.PathLike[str] | None = None) -> Path:
    """Path of one weights file, found or downloaded as described in the module docstring.

    ``filename`` need not be catalogued (e.g. a Darknet cfg a user keeps in the
    weights folder): such files are found by name but cannot be checked or
    downloaded. Raises ``WeightsError`` with one line naming the file and the
    three ways to provide it.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise WeightsError(f"{path}: no such weights file (given for {filename})")
        return path
    entry = _entry(model, filename)
    found = _find_in_weights_dir(filename) or _find_in_packages(filename)
    if found is None and (weights_cache_dir() / filename).is_file():
        found = weights_cache_dir() / filename
    if found is not None:
        if entry is not None:
            _verify(entry, found)
        return found
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


def converted_cache_path(source: str | os.PathLike[str], kind: str, suffix: str) -> Path:
    """Where a model converted from ``source`` is cached, keyed by the source's sha256.

    Another file under the same name gets another cache entry, so a conversion
    is never reused for different weights. ``kind`` names the conversion (e.g.
    ``"darknet-keras"``); bump it (``"darknet-keras-2"``) when the converter's
    output changes. The folder is created; the caller writes the file itself,
    preferably through ``shared.files.atomic_output``.
    """
    if not kind or not kind.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"kind must be a simple name like 'darknet-keras', got {kind!r}")
    source = Path(source)
    if not source.is_file():
        raise WeightsError(f"{source}: no such weights file to convert")
    folder = cache_dir() / "converted" / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{source.stem}-{file_sha256(source)}{suffix}"
