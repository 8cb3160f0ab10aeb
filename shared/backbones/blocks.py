"""Building blocks of the convolutional networks, as functions on Keras functional tensors.

Every block takes a ``name`` prefix and derives all of its layer names from it, so that a
network built twice has the same layer names and weights can be loaded by name (Keras
applications, SqueezeNet's HDF5 file, converted OpenFace/dlib weights). Keras 3 forbids ``/``
in layer names, so the separator is ``_``: SqueezeNet's ``fire2/squeeze1x1`` becomes
``fire2_squeeze1x1`` here and its weight loader maps one to the other.

Naming scheme (``p`` is the prefix passed as ``name``):
- ``conv_bn_act``: ``p_pad`` (only for an integer padding), ``p_conv``, ``p_bn``,
  ``p_<activation>``; each can be overridden (``conv_name``, ``bn_name``, ``act_name``) for
  networks whose published weights use other names (OpenFace ``conv1``/``bn1``).
- residual blocks: as ``keras.applications.ResNet50``: ``p_1_conv`` … ``p_3_bn`` for the main
  path, ``p_0_conv``/``p_0_bn`` for a projection shortcut, ``p_add`` and ``p_out``.
- ``inception_module``: ``p_1x1``, ``p_3x3_reduce``, ``p_3x3``, ``p_5x5_reduce``, ``p_5x5``,
  ``p_pool``, ``p_pool_proj`` (each a ``conv_bn_act`` prefix), ``p_output``.
- ``fire_module``: ``p_squeeze1x1``, ``p_relu_squeeze1x1``, ``p_expand1x1``, ``p_expand3x3``,
  ``p_relu_expand1x1``, ``p_relu_expand3x3``, ``p_concat`` (SqueezeNet's names).
"""

from __future__ import annotations

from keras import layers

from shared.backbones.layers import InstanceNormalization, Upsampling2x

CHANNEL_AXIS = -1  # channels-last throughout, as TensorFlow on CPU prefers
BN_EPSILON = 1e-3  # Keras's default; networks with published weights pass their own


def conv_bn_act(
    x,
    filters: int,
    kernel_size: int | tuple[int, int],
    strides: int | tuple[int, int] = 1,
    padding: str | int = "same",
    activation: str | None = "relu",
    use_bn: bool = True,
    *,
    name: str,
    use_bias: bool | None = None,
    bn_epsilon: float = BN_EPSILON,
    conv_name: str | None = None,
    bn_name: str | None = None,
    act_name: str | None = None,
):
    """Convolution, optional batch normalisation, optional activation.

    ``padding`` is ``"same"``, ``"valid"`` or an int: an explicit symmetric zero padding
    (Torch/Caffe style) followed by a ``"valid"`` convolution. The int form matters for strided
    convolutions, where Keras's ``"same"`` pads asymmetrically and so would not reproduce
    networks trained in Torch or Caffe.

    ``use_bias`` defaults to ``not use_bn``: a bias in front of batch normalisation is cancelled
    by its mean subtraction. Networks whose published weights carry that bias anyway (OpenFace)
    pass ``use_bias=True`` so their parameter count and weight files match.
    """
    if isinstance(padding, int):
        if padding > 0:
            x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
        padding = "valid"
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=(not use_bn) if use_bias is None else use_bias,
        name=conv_name or f"{name}_conv",
    )(x)
    if use_bn:
        x = layers.BatchNormalization(
            axis=CHANNEL_AXIS, epsilon=bn_epsilon, name=bn_name or f"{name}_bn"
        )(x)
    if activation is not None:
        x = layers.Activation(activation, name=act_name or f"{name}_{activation}")(x)
    return x


def _shortcut(x, out_channels: int, strides: int, name: str, bn_epsilon: float):
    """Identity when the shape is unchanged, else a 1x1 projection (conv + BN) to the new shape."""
    if strides == 1 and x.shape[CHANNEL_AXIS] == out_channels:
        return x
    return conv_bn_act(
        x,
        out_channels,
        1,
        strides=strides,
        activation=None,
        name=f"{name}_0",
        bn_epsilon=bn_epsilon,
    )


def _merge_residual(shortcut, residual, name: str):
    x = layers.Add(name=f"{name}_add")([shortcut, residual])
    return layers.Activation("relu", name=f"{name}_out")(x)


def residual_basic_block(
    x, filters: int, strides: int = 1, *, name: str, bn_epsilon: float = BN_EPSILON
):
    """ResNet-18/34 block: two 3x3 conv-BN (ReLU between), added to the shortcut, then ReLU.

    The first convolution carries the stride, so the block halves the resolution when
    ``strides=2``; the shortcut is then a strided 1x1 projection (He et al. 2016, option B).
    """
    shortcut = _shortcut(x, filters, strides, name, bn_epsilon)
    y = conv_bn_act(x, filters, 3, strides=strides, name=f"{name}_1", bn_epsilon=bn_epsilon)
    y = conv_bn_act(y, filters, 3, activation=None, name=f"{name}_2", bn_epsilon=bn_epsilon)
    return _merge_residual(shortcut, y, name)


def residual_bottleneck_block(
    x,
    filters: int,
    strides: int = 1,
    expansion: int = 4,
    *,
    name: str,
    bn_epsilon: float = BN_EPSILON,
):
    """ResNet-50/101/152 block: 1x1 reduce, 3x3, 1x1 expand to ``filters * expansion`` channels.

    The 1x1 reduction is what makes deep ResNets affordable: the 3x3 convolution runs on
    ``filters`` channels instead of ``filters * expansion``. The stride sits on the first 1x1
    convolution, as in the original paper and ``keras.applications.ResNet50`` (whose layer
    names this block reproduces).
    """
    out_channels = filters * expansion
    shortcut = _shortcut(x, out_channels, strides, name, bn_epsilon)
    y = conv_bn_act(x, filters, 1, strides=strides, name=f"{name}_1", bn_epsilon=bn_epsilon)
    y = conv_bn_act(y, filters, 3, name=f"{name}_2", bn_epsilon=bn_epsilon)
    y = conv_bn_act(y, out_channels, 1, activation=None, name=f"{name}_3", bn_epsilon=bn_epsilon)
    return _merge_residual(shortcut, y, name)


def inception_module(
    x,
    f1x1: int,
    f3x3_reduce: int,
    f3x3: int,
    f5x5_reduce: int,
    f5x5: int,
    pool_proj: int,
    *,
    name: str,
    use_bn: bool = False,
):
    """GoogLeNet's Inception module (Szegedy et al. 2015, Figure 2b), stride 1.

    Four parallel branches — 1x1; 1x1 reduce then 3x3; 1x1 reduce then 5x5; 3x3 max-pool then
    1x1 projection — concatenated on the channel axis, so the output has
    ``f1x1 + f3x3 + f5x5 + pool_proj`` channels at the input's resolution. The 1x1 reductions
    are the point: a 5x5 convolution on 16 reduced channels costs about a tenth of one on the
    full input (see ``shared.flops``). ``use_bn=False`` is the original; ``True`` adds batch
    normalisation after every convolution (Inception-v2 style).
    """
    branch_1x1 = conv_bn_act(x, f1x1, 1, use_bn=use_bn, name=f"{name}_1x1")
    branch_3x3 = conv_bn_act(x, f3x3_reduce, 1, use_bn=use_bn, name=f"{name}_3x3_reduce")
    branch_3x3 = conv_bn_act(branch_3x3, f3x3, 3, use_bn=use_bn, name=f"{name}_3x3")
    branch_5x5 = conv_bn_act(x, f5x5_reduce, 1, use_bn=use_bn, name=f"{name}_5x5_reduce")
    branch_5x5 = conv_bn_act(branch_5x5, f5x5, 5, use_bn=use_bn, name=f"{name}_5x5")
    branch_pool = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch_pool = conv_bn_act(branch_pool, pool_proj, 1, use_bn=use_bn, name=f"{name}_pool_proj")
    return layers.Concatenate(axis=CHANNEL_AXIS, name=f"{name}_output")(
        [branch_1x1, branch_3x3, branch_5x5, branch_pool]
    )


def fire_module(x, squeeze: int, expand: int, *, name: str):
    """SqueezeNet's Fire module (Iandola et al. 2016): squeeze 1x1, then expand 1x1 and 3x3.

    The squeeze layer cuts the channels the 3x3 filters see; the two expand branches (each
    ``expand`` filters, ReLU) are concatenated in the order 1x1, 3x3, so the output has
    ``2 * expand`` channels. Layer names follow the published SqueezeNet weights with ``_``
    for ``/`` (``fire2_squeeze1x1`` for ``fire2/squeeze1x1``).
    """

    def conv_relu(tensor, filters: int, kernel_size: int, kind: str):
        return conv_bn_act(
            tensor,
            filters,
            kernel_size,
            padding="same",
            use_bn=False,
            name=f"{name}_{kind}",
            conv_name=f"{name}_{kind}",
            act_name=f"{name}_relu_{kind}",
        )

    squeezed = conv_relu(x, squeeze, 1, "squeeze1x1")
    left = conv_relu(squeezed, expand, 1, "expand1x1")
    right = conv_relu(squeezed, expand, 3, "expand3x3")
    return layers.Concatenate(axis=CHANNEL_AXIS, name=f"{name}_concat")([left, right])


def _conv(filters: int, kernel_size: int, strides: int, separable: bool, name: str):
    """A 'same' convolution; depthwise-separable (a 3x3 per channel, then 1x1) when asked."""
    if separable:
        return layers.SeparableConv2D(
            filters, kernel_size, strides=strides, padding="same", name=f"{name}_conv"
        )
    return layers.Conv2D(filters, kernel_size, strides=strides, padding="same", name=f"{name}_conv")


def conv_in_act(
    x,
    filters: int,
    kernel_size: int,
    strides: int = 1,
    activation: str | None = "relu",
    *,
    separable: bool = False,
    name: str,
):
    """Convolution, instance normalisation, optional activation (``p_conv``, ``p_in``, ``p_<act>``).

    The image-to-image counterpart of ``conv_bn_act``: instance statistics do not depend on the
    batch, so the network behaves the same on one video frame as on a training batch.
    ``separable`` uses a depthwise-separable convolution, about ``1/k² + 1/filters`` of the
    multiplications of a full one, for networks that must run on CPUs.
    """
    x = _conv(filters, kernel_size, strides, separable, name)(x)
    x = InstanceNormalization(name=f"{name}_in")(x)
    if activation is not None:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def residual_in_block(x, *, separable: bool = False, name: str):
    """Johnson et al.'s residual block: two 3x3 conv + instance norm (ReLU between), plus the input.

    No activation after the addition (as in Johnson et al.'s supplementary material and Gross
    and Wilber's study): the block stays an identity at initialisation. Channels are unchanged.
    """
    filters = x.shape[CHANNEL_AXIS]
    y = conv_in_act(x, filters, 3, separable=separable, name=f"{name}_1")
    y = conv_in_act(y, filters, 3, activation=None, separable=separable, name=f"{name}_2")
    return layers.Add(name=f"{name}_add")([x, y])


def upsample_conv_in_act(
    x, filters: int, kernel_size: int = 3, *, separable: bool = False, name: str
):
    """Double the resolution by nearest-neighbour resizing, then conv + instance norm + ReLU.

    Resize-convolution (Odena et al. 2016, "Deconvolution and checkerboard artifacts") instead
    of a transposed convolution with stride 2, whose uneven kernel overlap paints a checkerboard
    over every stylised image.
    """
    x = Upsampling2x("nearest", name=f"{name}_up")(x)  # one graph for every image size
    return conv_in_act(x, filters, kernel_size, separable=separable, name=name)
