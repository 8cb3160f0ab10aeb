"""Loading a network's weights from a file, with one clear error when the file does not fit."""

from __future__ import annotations

from pathlib import Path

import keras

from shared.errors import WeightsError


def load_keras_weights(model: keras.Model, path: str | Path) -> None:
    """Load a Keras weights file (``.weights.h5`` or ``.keras``) saved from the same network.

    Keras raises a variety of exceptions for a missing, foreign or mismatched file; they all
    become one ``WeightsError`` naming the file, the model and the reason.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: weights file not found (for {model.name})")
    try:
        model.load_weights(path)
    except (ValueError, OSError, KeyError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise WeightsError(f"{path}: does not fit {model.name}: {reason}") from error


def model_with_weights(inputs, outputs, name: str, weights: str | Path | None) -> keras.Model:
    """The functional model from ``inputs`` to ``outputs``, with a Keras weights file loaded
    when ``weights`` is a path (None keeps the random initialisation)."""
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        load_keras_weights(model, weights)
    return model
