"""GoogLeNet / Inception-v1 (Szegedy et al. 2015, Table 1), built from ``inception_module``.

Stem: 7x7/2 conv, 3x3/2 max pool, LRN, 1x1 reduce + 3x3 conv, LRN, 3x3/2 max pool; then
Inception 3a, 3b, pool, 4a … 4e, pool, 5a, 5b; with the top, 7x7 global average pooling,
40 % dropout and a 1000-way softmax. The two auxiliary classifiers of the paper only served
training and are left out. Layer prefixes follow Caffe's ``bvlc_googlenet`` with ``_`` for ``/``
(``conv1_7x7_s2``, ``inception_3a`` …). At 224x224x3 the model has 6,998,552 weights; the
paper's table (which ignores biases) lists about 6.8 million.
"""

from __future__ import annotations

import keras
from keras import layers

from shared.backbones.blocks import conv_bn_act, inception_module
from shared.backbones.layers import LocalResponseNormalization
from shared.backbones.preprocessing import caffe_bgr_mean
from shared.backbones.weight_files import model_with_weights

INPUT_SHAPE = (224, 224, 3)

preprocess_input = caffe_bgr_mean
"""Caffe's convention (BGR, ImageNet means subtracted), as ``bvlc_googlenet`` was trained."""

INCEPTION_FILTERS = {
    # name: (#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), Table 1 of the paper
    "inception_3a": (64, 96, 128, 16, 32, 32),
    "inception_3b": (128, 128, 192, 32, 96, 64),
    "inception_4a": (192, 96, 208, 16, 48, 64),
    "inception_4b": (160, 112, 224, 24, 64, 64),
    "inception_4c": (128, 128, 256, 24, 64, 64),
    "inception_4d": (112, 144, 288, 32, 64, 64),
    "inception_4e": (256, 160, 320, 32, 128, 128),
    "inception_5a": (256, 160, 320, 32, 128, 128),
    "inception_5b": (384, 192, 384, 48, 128, 128),
}
POOL_AFTER = {"inception_3b": "pool3_3x3_s2", "inception_4e": "pool4_3x3_s2"}


def googlenet(
    weights=None, input_shape=INPUT_SHAPE, include_top: bool = True, classes: int = 1000
) -> keras.Model:
    """Build GoogLeNet; without the top it ends at ``inception_5b_output`` (1024 channels).

    ``weights`` is None or a Keras weights file saved from this network.
    """
    inputs = keras.Input(input_shape, name="input")
    x = conv_bn_act(inputs, 64, 7, strides=2, padding=3, use_bn=False, name="conv1_7x7_s2")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool1_3x3_s2")(x)
    x = LocalResponseNormalization(name="pool1_norm1")(x)
    x = conv_bn_act(x, 64, 1, use_bn=False, name="conv2_3x3_reduce")
    x = conv_bn_act(x, 192, 3, use_bn=False, name="conv2_3x3")
    x = LocalResponseNormalization(name="conv2_norm2")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="same", name="pool2_3x3_s2")(x)
    for name, filters in INCEPTION_FILTERS.items():
        x = inception_module(x, *filters, name=name)
        if name in POOL_AFTER:
            x = layers.MaxPooling2D(3, strides=2, padding="same", name=POOL_AFTER[name])(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="pool5_7x7_s1")(x)
        x = layers.Dropout(0.4, name="pool5_drop_7x7_s1")(x)
        x = layers.Dense(classes, activation="softmax", name="loss3_classifier")(x)
    return model_with_weights(inputs, x, "googlenet", weights)
