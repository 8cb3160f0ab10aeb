"""SqueezeNet v1.1 (Iandola et al. 2016) and its ImageNet weights from the Keras-1 port.

Architecture of the DeepCognition/keras-squeezenet port (commit a73d433), which the weights
file fits: conv1 64@3x3/2 ('valid', as in Caffe's v1.1) + ReLU, max pool 3x3/2, fire2-3,
max pool, fire4-5, max pool, fire6-9. Fire (squeeze, expand) sizes: 2-3 (16, 64),
4-5 (32, 128), 6-7 (48, 192), 8-9 (64, 256). 722,496 weights without the top.

The weights file is a Keras 1 HDF5 file: the root attribute ``layer_names`` lists the layers
in order, each layer group has a ``weight_names`` attribute naming its datasets (kernel
``uniformN`` in HWIO order, bias ``<layer>_b``). Keras 3 cannot read it with
``load_weights`` and forbids ``/`` in layer names, so it is read here with h5py and matched by
name with ``/`` -> ``_`` (``fire2/squeeze1x1`` -> ``fire2_squeeze1x1``).
"""

from __future__ import annotations

from pathlib import Path

import h5py
import keras
import numpy as np
from keras import layers

from shared.backbones.blocks import conv_bn_act, fire_module
from shared.backbones.preprocessing import caffe_bgr_mean
from shared.errors import WeightsError
from shared.weights import resolve_file

INPUT_SHAPE = (None, None, 3)  # fully convolutional without the top
CATALOGUE_NAME = "squeezenet-1.1"
NOTOP_FILE = "squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5"

FIRE_FILTERS = {  # name: (squeeze, expand)
    "fire2": (16, 64),
    "fire3": (16, 64),
    "fire4": (32, 128),
    "fire5": (32, 128),
    "fire6": (48, 192),
    "fire7": (48, 192),
    "fire8": (64, 256),
    "fire9": (64, 256),
}
POOL_AFTER = {"relu_conv1": "pool1", "fire3": "pool3", "fire5": "pool5"}

preprocess_input = caffe_bgr_mean
"""Caffe's convention: RGB -> BGR, subtract 103.939, 116.779, 123.68, no scaling."""


def squeezenet11(
    weights: str | Path | None = None,
    input_shape: tuple[int | None, int | None, int] = INPUT_SHAPE,
    include_top: bool = False,
    classes: int = 1000,
) -> keras.Model:
    """Build SqueezeNet 1.1, optionally with weights.

    ``weights``: None (random), ``"imagenet"`` (the no-top file, found through the weights
    resolver), or the path of a Keras-1 SqueezeNet HDF5 file. Without the top the output is
    ``fire9_concat`` (512 channels at about 1/16 of the input size); the top is SqueezeNet's
    dropout, 1x1 ``conv10`` to ``classes`` + ReLU, global average pooling and softmax.
    """
    inputs = keras.Input(input_shape, name="input")
    x = conv_bn_act(
        inputs,
        64,
        3,
        strides=2,
        padding="valid",
        use_bn=False,
        name="conv1",
        conv_name="conv1",
        act_name="relu_conv1",
    )
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    for name, (squeeze, expand) in FIRE_FILTERS.items():
        x = fire_module(x, squeeze, expand, name=name)
        if name in POOL_AFTER:
            x = layers.MaxPooling2D(3, strides=2, name=POOL_AFTER[name])(x)
    if include_top:
        x = layers.Dropout(0.5, name="drop9")(x)
        x = conv_bn_act(
            x, classes, 1, use_bn=False, name="conv10", conv_name="conv10", act_name="relu_conv10"
        )
        x = layers.GlobalAveragePooling2D(name="pool10")(x)
        x = layers.Activation("softmax", name="prob")(x)
    model = keras.Model(inputs, x, name="squeezenet11")
    if weights == "imagenet":
        weights = resolve_file(CATALOGUE_NAME, NOTOP_FILE)
    if weights is not None:
        load_squeezenet_h5(model, Path(weights))
    return model


def read_squeezenet_h5(path: Path) -> dict[str, list[np.ndarray]]:
    """Weights of a Keras-1 HDF5 file by Keras-3 layer name, each ``[kernel, bias]``."""
    if not path.is_file():
        raise WeightsError(f"{path}: SqueezeNet weights file not found")
    try:
        with h5py.File(path, "r") as h5:
            if "layer_names" not in h5.attrs:
                raise WeightsError(f"{path}: not a Keras-1 weights file (no 'layer_names')")
            weights = {}
            for raw_name in h5.attrs["layer_names"]:
                group = h5[raw_name.decode()]
                arrays = [np.asarray(group[w.decode()]) for w in group.attrs["weight_names"]]
                if arrays:
                    # Keras's order: kernel (4-D) before bias (1-D), whatever the file's order.
                    arrays.sort(key=lambda array: -array.ndim)
                    weights[raw_name.decode().replace("/", "_")] = arrays
    except (OSError, KeyError) as error:
        raise WeightsError(f"{path}: not a readable SqueezeNet HDF5 file ({error})") from error
    return weights


def load_squeezenet_h5(model: keras.Model, path: Path) -> None:
    """Set every weighted layer of ``model`` from the file, by name, checking shapes.

    Layers with weights must match one to one: a layer missing on either side (a top in the
    model but not in a no-top file, a file for another network) is an error rather than a
    silently random layer.
    """
    file_weights = read_squeezenet_h5(path)
    model_layers = {layer.name: layer for layer in model.layers if layer.weights}
    if missing := sorted(model_layers.keys() - file_weights.keys()):
        raise WeightsError(f"{path}: has no weights for layers {', '.join(missing)}")
    if extra := sorted(file_weights.keys() - model_layers.keys()):
        raise WeightsError(f"{path}: has layers the model lacks: {', '.join(extra)}")
    for name, layer in model_layers.items():
        expected = [tuple(weight.shape) for weight in layer.weights]
        found = [array.shape for array in file_weights[name]]
        if expected != found:
            raise WeightsError(f"{path}: layer {name} has shapes {found}, expected {expected}")
        layer.set_weights(file_weights[name])
