"""Reading a model a training command saved (``.keras``), with one error line for anything else.

``stylize-train``, ``face-train`` and ``detect-cars-train`` each save a task model; their
commands read it back through ``load_saved_model``, so a missing, corrupt or foreign file is one
line naming the file and what was expected, never a Keras traceback.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

from shared.errors import InputError


def load_saved_model(path: str | os.PathLike[str], kind: type, what: str, made_by: str):
    """The ``kind`` model in the ``.keras`` file ``path`` (``what``, e.g. "a style model",
    and ``made_by``, the command that saves it, word the errors)."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: no such model file")
    if not zipfile.is_zipfile(path):  # Keras itself would say "File not found"
        raise InputError(f"{path}: not {what} saved by {made_by} (not a .keras archive)")
    try:
        model = keras.saving.load_model(path, compile=False)
    except Exception as error:  # Keras raises ValueError, OSError, zipfile errors, TypeError...
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(f"{path}: not {what} saved by {made_by} ({first})") from None
    if not isinstance(model, kind):
        raise InputError(f"{path}: a Keras model, but not {what} saved by {made_by}")
    return model
