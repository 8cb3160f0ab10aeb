"""Multiplication counts: hand-computed single layers, the Inception bottleneck example, and the
totals published for whole networks."""

from __future__ import annotations

import keras
import pytest
from keras import layers

from shared.backbones.alexnet import alexnet
from shared.backbones.blocks import inception_module
from shared.backbones.googlenet import googlenet
from shared.backbones.squeezenet import squeezenet11
from shared.flops import count_multiplications, layer_multiplications, total_multiplications


def _chain(input_shape, *stack):
    inputs = keras.Input(input_shape)
    x = inputs
    for layer in stack:
        x = layer(x)
    return keras.Model(inputs, x)


def _module_total(model, prefix):
    return sum(c.multiplications for c in count_multiplications(model) if c.name.startswith(prefix))


def test_direct_5x5_convolution():
    model = _chain((28, 28, 192), layers.Conv2D(32, 5, padding="same"))
    assert total_multiplications(model) == 28 * 28 * 32 * 5 * 5 * 192 == 120_422_400


def test_1x1_bottleneck_costs_a_tenth():
    model = _chain(
        (28, 28, 192),
        layers.Conv2D(16, 1, name="reduce"),
        layers.Conv2D(32, 5, padding="same", name="conv5x5"),
    )
    costs = count_multiplications(model)
    assert [(c.name, c.multiplications) for c in costs] == [
        ("reduce", 28 * 28 * 16 * 192),
        ("conv5x5", 28 * 28 * 32 * 5 * 5 * 16),
    ]
    assert total_multiplications(model) == 12_443_648
    assert model.output.shape == (None, 28, 28, 32)


def test_inception_3a_module():
    inputs = keras.Input((28, 28, 192))
    model = keras.Model(inputs, inception_module(inputs, 64, 96, 128, 16, 32, 32, name="i"))
    assert model.output.shape == (None, 28, 28, 256)
    per_position = 192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32
    assert total_multiplications(model) == 28 * 28 * per_position == 128_049_152


def test_googlenet_matches_the_paper():
    """Szegedy et al. 2015, Table 1 "ops": 3a 128M, 4c 100M, 5b 71M; about 1.5 billion
    multiply-adds in all."""
    model = googlenet()
    assert round(_module_total(model, "inception_3a_") / 1e6) == 128
    assert round(_module_total(model, "inception_4c_") / 1e6) == 100
    assert round(_module_total(model, "inception_5b_") / 1e6) == 71
    assert total_multiplications(model) == pytest.approx(1.5e9, rel=0.06)


def test_alexnet_grouped_convolution_and_total():
    model = alexnet()
    conv2 = next(c for c in count_multiplications(model) if c.name == "conv2")
    assert conv2.multiplications == 27 * 27 * 256 * 5 * 5 * 48  # each group sees 48 channels
    assert round(total_multiplications(model) / 1e6) == 724  # Caffe's bvlc_alexnet: 724M


def test_squeezenet_11_is_0_35_billion():
    """DeepScale quote 0.72 GFLOPS for v1.1 at 227x227 (multiplications and additions)."""
    model = squeezenet11(include_top=True, input_shape=(227, 227, 3))
    assert 2 * total_multiplications(model) == pytest.approx(0.72e9, rel=0.03)


def test_resnet50_is_3_8_billion():
    """He et al. 2016, Table 1: 3.8 x 10^9 multiply-adds for ResNet-50."""
    model = keras.applications.ResNet50(weights=None)
    assert total_multiplications(model) == pytest.approx(3.8e9, rel=0.02)


def test_dense_depthwise_separable_and_transposed():
    assert total_multiplications(_chain((120,), layers.Dense(84))) == 120 * 84
    assert total_multiplications(_chain((5, 8), layers.Dense(3))) == 5 * 8 * 3
    depthwise = _chain((10, 10, 8), layers.DepthwiseConv2D(3, depth_multiplier=2, padding="same"))
    assert total_multiplications(depthwise) == 10 * 10 * 16 * 9
    separable = _chain((10, 10, 8), layers.SeparableConv2D(16, 3, padding="same"))
    assert total_multiplications(separable) == 10 * 10 * 8 * 9 + 10 * 10 * 8 * 16
    transposed = _chain((4, 4, 3), layers.Conv2DTranspose(5, 3, strides=2, padding="same"))
    assert transposed.output.shape == (None, 8, 8, 5)
    assert total_multiplications(transposed) == 4 * 4 * 3 * 9 * 5


def test_uncounted_layers_and_nested_models():
    inner = _chain((6, 6, 4), layers.Conv2D(2, 3, name="inner_conv"))
    outer = _chain((6, 6, 4), inner, layers.GlobalAveragePooling2D(), layers.Dense(1, name="head"))
    costs = count_multiplications(outer)
    assert [(c.name, c.kind) for c in costs] == [("inner_conv", "Conv2D"), ("head", "Dense")]
    assert total_multiplications(outer) == 4 * 4 * 2 * 9 * 4 + 2
    assert layer_multiplications(layers.ReLU()) is None


def test_unknown_spatial_size_is_an_error():
    model = _chain((None, None, 3), layers.Conv2D(4, 3, name="conv"))
    with pytest.raises(ValueError, match=r"conv: output shape .* not fully known"):
        total_multiplications(model)
