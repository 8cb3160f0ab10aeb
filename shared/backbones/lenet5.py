"""LeNet-5 (LeCun et al. 1998): the classic 32x32 grey-digit classifier, about 60 thousand weights.

C1 6@5x5 -> S2 2x2 average pool -> C3 16@5x5 -> S4 -> C5 120@5x5 -> F6 84 -> 10 outputs,
tanh throughout and a softmax output. C3 here connects to all six S2 maps (the paper's sparse
connection table saved 905 weights of 1998 hardware); with full connections the count is
61,706: 156 + 2,416 + 48,120 + 10,164 + 850.
"""

from __future__ import annotations

import keras
from keras import layers

from shared.backbones.preprocessing import scale_to_unit
from shared.backbones.weight_files import model_with_weights

INPUT_SHAPE = (32, 32, 1)

preprocess_input = scale_to_unit
"""No published weights ship; models trained here see pixels scaled to [0, 1]."""


def lenet5(weights=None, input_shape=INPUT_SHAPE, classes: int = 10) -> keras.Model:
    """Build LeNet-5; ``weights`` is None or a Keras weights file saved from this network."""
    inputs = keras.Input(input_shape, name="input")
    x = layers.Conv2D(6, 5, activation="tanh", name="c1")(inputs)
    x = layers.AveragePooling2D(2, name="s2")(x)
    x = layers.Conv2D(16, 5, activation="tanh", name="c3")(x)
    x = layers.AveragePooling2D(2, name="s4")(x)
    x = layers.Conv2D(120, 5, activation="tanh", name="c5")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(84, activation="tanh", name="f6")(x)
    outputs = layers.Dense(classes, activation="softmax", name="output")(x)
    return model_with_weights(inputs, outputs, "lenet5", weights)
