"""FaceNet's Inception network nn4.small2, as trained by OpenFace (nn4.small2.v1).

The architecture follows OpenFace's ``models/openface/nn4.small2.def.lua`` module by module;
layer names follow the Keras port (Keras-OpenFace, deeplearning.ai "Happy House") so that its
converted weights load by name: ``conv1``/``bn1`` … ``conv3``/``bn3``, then per Inception block
``inception_3a_3x3_conv1``, ``…_3x3_bn1``, ``…_3x3_conv2``, ``…_3x3_bn2``, the same for ``5x5``,
``…_pool_conv``/``…_pool_bn`` and ``…_1x1_conv``/``…_1x1_bn``, and ``dense_layer``.

Three details make the count and the outputs match the Torch original rather than a loose
copy: convolutions keep their bias in front of batch normalisation (epsilon 1e-5, Torch's);
paddings are explicit and symmetric; and a pooling branch that comes out smaller than the
convolution branches is zero-padded around the centre before concatenation, which is what
Torch's ``nn.DepthConcat`` does (``floor`` of the difference before, the rest after).
With a 96x96x3 input the model has 3,743,280 weights: OpenFace's 3,733,968 trainable ones
plus the two running statistics of its 4,656 batch-normalisation channels.
"""

from __future__ import annotations

from typing import NamedTuple

import keras
from keras import layers

from shared.backbones.blocks import CHANNEL_AXIS, conv_bn_act
from shared.backbones.layers import L2Pooling2D, LocalResponseNormalization
from shared.backbones.preprocessing import scale_to_unit
from shared.backbones.weight_files import model_with_weights

INPUT_SHAPE = (96, 96, 3)
EMBEDDING_SIZE = 128
BN_EPSILON = 1e-5  # Torch's SpatialBatchNormalization default

preprocess_input = scale_to_unit
"""OpenFace feeds RGB scaled to [0, 1]."""


def _conv(x, filters: int, kernel_size: int, name: str, *, strides: int = 1, bn: str | None = None):
    """Conv (with bias) + BN + ReLU under OpenFace's names, with Torch's symmetric padding."""
    return conv_bn_act(
        x,
        filters,
        kernel_size,
        strides=strides,
        padding=kernel_size // 2,
        use_bias=True,
        bn_epsilon=BN_EPSILON,
        name=name,
        conv_name=name,
        bn_name=bn or name.replace("conv", "bn"),
    )


def _pad_to(x, size: int, name: str):
    """Zero-pad a smaller square branch to ``size``, centred the way Torch's DepthConcat does."""
    missing = size - x.shape[1]
    if missing == 0:
        return x
    before = missing // 2
    padding = ((before, missing - before),) * 2
    return layers.ZeroPadding2D(padding, name=f"{name}_depthconcat_pad")(x)


class InceptionSpec(NamedTuple):
    """One nn4 Inception block: ``(reduce, out)`` filters of the 3x3 and 5x5 branches (None:
    no branch), the pooling (``"max"`` 3x3/2 or ``"l2"`` 3x3/3) and its 1x1 projection, the
    1x1 branch, and the stride of the 3x3/5x5 convolutions (2 in the reduction blocks)."""

    conv3x3: tuple[int, int]
    conv5x5: tuple[int, int] | None
    pool: str
    pool_proj: int | None
    conv1x1: int | None
    strides: int = 1


INCEPTION_BLOCKS = {  # OpenFace's nn4.small2.def.lua, block by block
    "inception_3a": InceptionSpec((96, 128), (16, 32), "max", 32, 64),
    "inception_3b": InceptionSpec((96, 128), (32, 64), "l2", 64, 64),
    "inception_3c": InceptionSpec((128, 256), (32, 64), "max", None, None, strides=2),
    "inception_4a": InceptionSpec((96, 192), (32, 64), "l2", 128, 256),
    "inception_4e": InceptionSpec((160, 256), (64, 128), "max", None, None, strides=2),
    "inception_5a": InceptionSpec((96, 384), None, "l2", 96, 256),
    "inception_5b": InceptionSpec((96, 384), None, "max", 96, 256),
}


def _inception(x, name: str, spec: InceptionSpec):
    """Build one block; branches concatenated in OpenFace's order (3x3, 5x5, pool, 1x1)."""
    branches = []
    for kernel, filters in ((3, spec.conv3x3), (5, spec.conv5x5)):
        if filters is None:
            continue
        reduce, out = filters
        prefix = f"{name}_{kernel}x{kernel}"
        y = _conv(x, reduce, 1, f"{prefix}_conv1", bn=f"{prefix}_bn1")
        y = _conv(y, out, kernel, f"{prefix}_conv2", strides=spec.strides, bn=f"{prefix}_bn2")
        branches.append(y)
    if spec.pool == "max":
        y = layers.MaxPooling2D(3, strides=2, name=f"{name}_pool")(x)
    else:
        y = L2Pooling2D(3, strides=3, name=f"{name}_pool")(x)
    if spec.pool_proj is not None:
        y = _conv(y, spec.pool_proj, 1, f"{name}_pool_conv")
    branches.append(_pad_to(y, branches[0].shape[1], f"{name}_pool"))
    if spec.conv1x1 is not None:
        branches.append(_conv(x, spec.conv1x1, 1, f"{name}_1x1_conv"))
    return layers.Concatenate(axis=CHANNEL_AXIS, name=f"{name}_concat")(branches)


def nn4_small2(weights=None, input_shape: tuple[int, int, int] = INPUT_SHAPE) -> keras.Model:
    """Build nn4.small2: 96x96x3 RGB in [0, 1] -> L2-normalised 128-d embedding.

    ``weights`` is None (random initialisation, for training with a triplet loss) or the path
    of a Keras weights file saved from this model. The input size is fixed because the
    DepthConcat padding is computed from it.
    """
    inputs = keras.Input(input_shape, name="input")
    x = _conv(inputs, 64, 7, "conv1", strides=2)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)
    x = LocalResponseNormalization(name="lrn1")(x)
    x = _conv(x, 64, 1, "conv2")
    x = _conv(x, 192, 3, "conv3")
    x = LocalResponseNormalization(name="lrn2")(x)
    x = layers.ZeroPadding2D(1, name="pool3_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool3")(x)

    for name, spec in INCEPTION_BLOCKS.items():
        x = _inception(x, name, spec)

    x = layers.AveragePooling2D(3, strides=1, name="avg_pool")(x)
    x = layers.Flatten(name="flatten")(x)
    x = layers.Dense(EMBEDDING_SIZE, name="dense_layer")(x)
    outputs = layers.UnitNormalization(axis=-1, name="l2_normalize")(x)
    return model_with_weights(inputs, outputs, "nn4_small2", weights)
