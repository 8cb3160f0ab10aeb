"""A saved model is read back, and a missing, corrupt or foreign file is one line naming it."""

from __future__ import annotations

from pathlib import Path

import keras
import pytest

from shared.errors import InputError
from shared.saving import load_saved_model


def test_the_right_kind_of_model_is_read_and_anything_else_refused(tmp_path: Path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.save(tmp_path / "seq.keras")
    loaded = load_saved_model(tmp_path / "seq.keras", keras.Sequential, "a model", "this test")
    assert isinstance(loaded, keras.Sequential) and loaded.count_params() == 8

    def refused(name: str, kind: type = keras.Sequential) -> str:
        with pytest.raises(InputError) as error:
            load_saved_model(tmp_path / name, kind, "a style model", "stylize-train")
        return str(error.value)

    assert refused("missing.keras") == f"{tmp_path / 'missing.keras'}: no such model file"
    (tmp_path / "junk.keras").write_bytes(b"not a zip archive")
    assert refused("junk.keras").endswith(
        "junk.keras: not a style model saved by stylize-train (not a .keras archive)"
    )
    assert refused("seq.keras", kind=keras.layers.Dense).endswith(
        "seq.keras: a Keras model, but not a style model saved by stylize-train"
    )
