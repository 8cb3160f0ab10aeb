"""Writing outputs safely (no partial file, no earlier result lost) and fingerprinting files.

Every output of the apps (annotated videos, stylised images, converted models,
downloaded weights) is written through ``atomic_output``: a half-written file
never appears under the final name, so an interrupted run or a full disk cannot
leave a truncated video or model that a later run would trust.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shared.errors import InputError

# errno values meaning "no room left": the user must free space, not debug us.
_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}


def _current_umask() -> int:
    """The process umask, which ``mkstemp`` ignores (it always creates 0600 files).

    Read once at import; os.umask can only be read by setting it, so doing it
    while other threads create files would be a race.
    """
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def require_parent_folder(path: str | os.PathLike[str]) -> None:
    """Raise ``InputError`` naming ``path`` when the folder it would go in is not there."""
    folder = Path(path).parent
    if folder.is_dir():
        return
    if folder.exists():
        raise InputError(f"{path}: cannot write, {folder} is a file, not a folder")
    raise InputError(f"{path}: cannot write, folder {folder} does not exist")


def refuse_to_replace(path: str | os.PathLike[str], exist_ok: bool) -> None:
    """Raise ``InputError`` when ``path`` exists and replacing it was not allowed.

    Earlier results are not lost to a second run by accident: a command refuses and says
    how to allow it (``shared.cli.exist_ok_option``).
    """
    if not exist_ok and os.path.lexists(path):
        raise InputError(f"{path}: already exists; choose another name or pass --exist-ok")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` when the block succeeds.

    The temporary file sits in the same folder (so the final ``os.replace`` is an
    atomic rename on one file system) and keeps the suffix of ``path`` (so
    encoders such as ``cv2.imwrite`` or FFmpeg choose the format from it). On any
    exception, including KeyboardInterrupt, the temporary file is removed and the
    final name is left untouched. A full disk becomes one ``InputError`` line
    naming the file. The new file gets the usual permissions (0666 minus umask),
    not mkstemp's 0600.
    """
    final = Path(path)
    folder = final.parent
    require_parent_folder(final)
    try:
        fd, temp_name = tempfile.mkstemp(dir=folder, prefix=f".{final.stem}.", suffix=final.suffix)
    except OSError as err:
        raise InputError(f"{final}: cannot write ({err.strerror})") from err
    os.close(fd)
    temp = Path(temp_name)
    try:
        yield temp
        os.chmod(temp, 0o666 & ~_UMASK)
        _fsync_file(temp)
        os.replace(temp, final)
    except OSError as err:
        temp.unlink(missing_ok=True)
        if err.errno in _DISK_FULL:
            raise InputError(f"{final}: cannot write, no space left on the disk") from err
        if err.filename in (temp_name, temp):
            # The hidden temporary name means nothing to the user: name their file.
            raise InputError(f"{final}: cannot write ({err.strerror})") from err
        raise
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(folder)


def hash_file(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes with a hashlib algorithm, read in chunks so large weights
    need little memory."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, algorithm).hexdigest()
