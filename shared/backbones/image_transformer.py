"""The image transformation network of Johnson et al. (2016), in two widths.

An image in, an image of the same kind out: three convolutions down (full resolution, then
stride 2 twice), residual blocks at a quarter of the resolution, two resize-convolutions back
up and a last convolution to an RGB change added to the input; instance normalisation after
every convolution but the last (Ulyanov et al. 2016). Trained against a loss network it paints
any photo in one pass; the network itself knows nothing of style (``apps.style_transfer.fast``
owns that).

Widths:

* ``full``: the published network, 32-64-128 channels, five residual blocks, 9x9 outer
  convolutions; about 1.7 M parameters and 41 G multiply-adds per 1000x1000 pixels.
* ``light``: for CPUs, 16-32-64 channels with depthwise-separable convolutions in the residual
  blocks and the up-sampling, 3x3 outer convolutions, the first one strided (everything runs
  at half the resolution or less, the change is up-sampled bilinearly at the end): 22x fewer
  parameters, about 30x fewer multiply-adds.

Input and output are float RGB in [0, 255]; sides must be multiples of ``spec.stride`` (4 for
``full``, 8 for ``light``; the task model pads).
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers

from shared.backbones.blocks import conv_in_act, residual_in_block, upsample_conv_in_act
from shared.backbones.layers import Upsampling2x


@dataclass(frozen=True)
class TransformerSpec:
    """The shape of one width.

    ``filters`` are the channels after the first convolution and after each of the two
    stride-2 ones; ``stem_stride`` 2 makes the first convolution strided too (everything
    inside then runs at half the resolution, and one more 2x up-sampling ends the network).
    """

    filters: tuple[int, int, int]
    residual_blocks: int
    outer_kernel: int
    separable: bool
    stem_stride: int = 1

    def __post_init__(self) -> None:
        if self.stem_stride not in (1, 2):  # the end up-samples by exactly 2 (``up3``)
            raise ValueError(f"stem_stride must be 1 or 2, not {self.stem_stride}")

    @property
    def stride(self) -> int:
        """Image sides must be multiples of this."""
        return 4 * self.stem_stride


WIDTHS = {
    "full": TransformerSpec(
        filters=(32, 64, 128), residual_blocks=5, outer_kernel=9, separable=False
    ),
    "light": TransformerSpec(
        filters=(16, 32, 64), residual_blocks=5, outer_kernel=3, separable=True, stem_stride=2
    ),
}


def image_transformer(width: str = "full", name: str | None = None) -> keras.Model:
    """Build the network for ``width`` (a key of ``WIDTHS``) with random weights.

    Layer names are stable (``down1`` … ``res5`` … ``up2``, ``output``), so weights saved from
    one build load into another.
    """
    if width not in WIDTHS:
        raise ValueError(f"width must be one of {', '.join(WIDTHS)}, not {width!r}")
    spec = WIDTHS[width]
    full, half, quarter = spec.filters
    inputs = keras.Input((None, None, 3), name="image")
    x = layers.Rescaling(1 / 127.5, offset=-1.0, name="scale_in")(inputs)
    x = conv_in_act(x, full, spec.outer_kernel, strides=spec.stem_stride, name="down1")
    x = conv_in_act(x, half, 3, strides=2, name="down2")
    x = conv_in_act(x, quarter, 3, strides=2, name="down3")
    for block in range(1, spec.residual_blocks + 1):
        x = residual_in_block(x, separable=spec.separable, name=f"res{block}")
    x = upsample_conv_in_act(x, half, separable=spec.separable, name="up1")
    x = upsample_conv_in_act(x, full, separable=spec.separable, name="up2")
    x = layers.Conv2D(
        3, spec.outer_kernel, padding="same", kernel_initializer="zeros", name="output_conv"
    )(x)
    if spec.stem_stride > 1:
        # Back to full resolution on 3 channels rather than on ``filters[0]``: a quarter of
        # the memory traffic at the size where it costs most.
        x = Upsampling2x("bilinear", name="up3")(x)
    # The network paints a change onto its input (at most ±127.5 a pixel through tanh), then
    # the sum is clipped to [0, 255]. Starting at zero (the last kernel is zeros), the change
    # leaves the photo intact,
    # as stylize's optimisation starts from the content image: trained from scratch with an
    # absolute output, the light network's content cost stayed at 1.0 (nothing of the photo)
    # for 300 steps while the style cost fell, and the photos were unrecognisable.
    x = layers.Activation("tanh", name="output_tanh")(x)
    change = layers.Rescaling(127.5, name="change")(x)
    x = layers.Add(name="painted")([inputs, change])
    outputs = layers.ReLU(max_value=255.0, name="output")(x)
    return keras.Model(inputs, outputs, name=name or f"image_transformer_{width}")
