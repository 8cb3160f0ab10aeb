"""AlexNet (Krizhevsky, Sutskever & Hinton 2012) at Caffe's 227x227x3 input, 1000 classes.

Five convolutions (ReLU; LRN after conv1 and conv2; 3x3/2 max pooling after conv1, conv2,
conv5) then three fully connected layers, Caffe's layer names (conv1 … conv5, fc6 … fc8).

Which variant gives which count:
- ``grouped=True`` (default), the paper's and Caffe's ``bvlc_alexnet``: conv2, conv4 and conv5
  are split in two groups (the two GPUs), each seeing half the input channels:
  **60,965,224** weights, the "60 million parameters" of the paper.
- ``grouped=False``, the same widths without groups: 62,378,344.
(torchvision's single-GPU variant with 64/192/384/256/256 filters has 61,100,840.)
Nearly all of it, 58.6 million, sits in fc6-fc8: the convolutions hold 2.3 million.
"""

from __future__ import annotations

import keras
from keras import layers

from shared.backbones.layers import LocalResponseNormalization
from shared.backbones.preprocessing import caffe_bgr_mean
from shared.backbones.weight_files import model_with_weights

INPUT_SHAPE = (227, 227, 3)

preprocess_input = caffe_bgr_mean
"""Caffe's convention (BGR, ImageNet means subtracted), which AlexNet ports expect."""


def alexnet(
    weights=None, input_shape=INPUT_SHAPE, classes: int = 1000, grouped: bool = True
) -> keras.Model:
    """Build AlexNet; ``weights`` is None or a Keras weights file saved from this network."""
    groups = 2 if grouped else 1
    inputs = keras.Input(input_shape, name="input")
    x = layers.Conv2D(96, 11, strides=4, activation="relu", name="conv1")(inputs)
    x = LocalResponseNormalization(5, 1e-4, 0.75, k=2.0, name="norm1")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = layers.ZeroPadding2D(2, name="conv2_pad")(x)
    x = layers.Conv2D(256, 5, groups=groups, activation="relu", name="conv2")(x)
    x = LocalResponseNormalization(5, 1e-4, 0.75, k=2.0, name="norm2")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool2")(x)
    x = layers.Conv2D(384, 3, padding="same", activation="relu", name="conv3")(x)
    x = layers.Conv2D(384, 3, padding="same", groups=groups, activation="relu", name="conv4")(x)
    x = layers.Conv2D(256, 3, padding="same", groups=groups, activation="relu", name="conv5")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool5")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(4096, activation="relu", name="fc6")(x)
    x = layers.Dropout(0.5, name="drop6")(x)
    x = layers.Dense(4096, activation="relu", name="fc7")(x)
    x = layers.Dropout(0.5, name="drop7")(x)
    outputs = layers.Dense(classes, activation="softmax", name="fc8")(x)
    return model_with_weights(inputs, outputs, "alexnet", weights)
