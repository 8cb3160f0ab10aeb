"""Multiplication counts of a Keras model, layer by layer, from its static shapes.

The count that design decisions turn on: a 5x5 convolution from 28x28x192 to 28x28x32 costs
28*28*32 * 5*5*192 = 120,422,400 multiplications, but through a 16-channel 1x1 bottleneck
28*28*16*192 + 28*28*32 * 5*5*16 = 12,443,648, a tenth — the reason for Inception's 1x1
reductions and SqueezeNet's squeeze layers.

One multiply-accumulate is counted as one multiplication (FLOPs, counting the additions too,
are about twice as many). Bias additions, activations, normalisation and pooling are cheap
next to convolutions and are not counted. Layers are counted from their output shapes, so
the model needs a fully defined input size (build it with e.g. ``input_shape=(224, 224, 3)``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import layers


@dataclass(frozen=True)
class LayerCost:
    """Multiplications of one layer for one input sample."""

    name: str
    kind: str
    multiplications: int


def _static_shape(layer: layers.Layer, which: str) -> tuple[int, ...]:
    """The per-sample input or output shape of a layer called once, all sizes known."""
    try:
        shape = tuple(getattr(layer, which).shape[1:])
    except (AttributeError, ValueError) as error:  # never called, or called more than once
        raise ValueError(f"layer {layer.name}: no single {which} shape ({error})") from error
    if None in shape:
        raise ValueError(
            f"layer {layer.name}: {which} shape {shape} is not fully known; "
            "build the model with a fixed input size to count multiplications"
        )
    return shape


def _kernel_area(layer) -> int:
    return math.prod(layer.kernel_size)


def layer_multiplications(layer: layers.Layer) -> int | None:
    """Multiplications of one layer per sample, or None for a layer type not counted."""
    # Each input pixel is scattered through the whole kernel to every output channel.
    if isinstance(layer, layers.Conv2DTranspose):
        *spatial_in, in_channels = _static_shape(layer, "input")
        return math.prod(spatial_in) * in_channels * _kernel_area(layer) * layer.filters
    if isinstance(layer, layers.DepthwiseConv2D):
        *spatial_out, out_channels = _static_shape(layer, "output")
        return math.prod(spatial_out) * out_channels * _kernel_area(layer)
    if isinstance(layer, layers.SeparableConv2D):
        *spatial_out, out_channels = _static_shape(layer, "output")
        in_channels = _static_shape(layer, "input")[-1]
        depthwise_channels = in_channels * layer.depth_multiplier
        positions = math.prod(spatial_out)
        return positions * depthwise_channels * (_kernel_area(layer) + out_channels)
    if isinstance(layer, layers.Conv2D):
        *spatial_out, out_channels = _static_shape(layer, "output")
        in_channels = _static_shape(layer, "input")[-1]
        per_output = _kernel_area(layer) * in_channels // layer.groups
        return math.prod(spatial_out) * out_channels * per_output
    if isinstance(layer, layers.Dense):
        *leading, units = _static_shape(layer, "output")
        return math.prod(leading) * _static_shape(layer, "input")[-1] * units
    return None


def count_multiplications(model: keras.Model) -> list[LayerCost]:
    """Per-layer multiplications of every counted layer, in model order (nested models
    are expanded into their layers)."""
    costs = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            costs.extend(count_multiplications(layer))
            continue
        multiplications = layer_multiplications(layer)
        if multiplications is not None:
            costs.append(LayerCost(layer.name, type(layer).__name__, multiplications))
    return costs


def total_multiplications(model: keras.Model) -> int:
    """Multiplications for one forward pass of one sample."""
    return sum(cost.multiplications for cost in count_multiplications(model))
