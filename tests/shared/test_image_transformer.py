"""Instance normalisation, the image-to-image blocks and Johnson et al.'s transformer network."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from shared.backbones import blocks
from shared.backbones.image_transformer import WIDTHS, image_transformer
from shared.backbones.layers import InstanceNormalization


def test_instance_normalization_normalises_each_image_and_channel_alone():
    rng = np.random.default_rng(0)
    # Two images with very different statistics: batch statistics would mix them.
    images = np.concatenate(
        [rng.normal(5.0, 3.0, (1, 6, 7, 4)), rng.normal(-2.0, 0.1, (1, 6, 7, 4))]
    ).astype(np.float32)
    layer = InstanceNormalization()
    out = np.asarray(layer(images))
    np.testing.assert_allclose(out.mean(axis=(1, 2)), 0.0, atol=1e-5)
    np.testing.assert_allclose(out.std(axis=(1, 2)), 1.0, atol=1e-2)
    alone = np.asarray(layer(images[1:]))
    np.testing.assert_allclose(alone, out[1:], atol=1e-5)  # a batch of one behaves the same
    grouped = keras.layers.GroupNormalization(groups=-1, epsilon=1e-5)(images)
    np.testing.assert_allclose(out, np.asarray(grouped), atol=1e-4)


def test_residual_in_block_is_identity_plus_a_residual_and_upsampling_doubles():
    inputs = keras.Input((8, 8, 16))
    out = blocks.residual_in_block(inputs, separable=True, name="res")
    model = keras.Model(inputs, out)
    assert model.output_shape == (None, 8, 8, 16)
    assert any(isinstance(layer, keras.layers.SeparableConv2D) for layer in model.layers)
    model.get_layer("res_2_in").set_weights([np.zeros(16), np.zeros(16)])  # residual off
    x = np.random.default_rng(1).normal(size=(1, 8, 8, 16)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(model(x)), x, atol=1e-6)
    up = blocks.upsample_conv_in_act(keras.Input((5, 7, 4)), 3, name="up")
    assert tuple(up.shape) == (None, 10, 14, 3)


@pytest.mark.parametrize("width", sorted(WIDTHS))
def test_transformer_keeps_the_image_size_and_range(width):
    model = image_transformer(width)
    stride = WIDTHS[width].stride
    image = np.random.default_rng(2).uniform(0, 255, (2, 3 * stride, 5 * stride, 3))
    out = np.asarray(model(image.astype(np.float32)))
    assert out.shape == image.shape
    assert out.min() >= 0.0 and out.max() <= 255.0


def test_light_width_is_far_smaller_than_full():
    full, light = image_transformer("full"), image_transformer("light")
    assert full.count_params() > 20 * light.count_params()
    with pytest.raises(ValueError, match="width"):
        image_transformer("huge")


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_upsampling_matches_keras_and_takes_any_size(interpolation):
    import tensorflow as tf

    from shared.backbones.layers import Upsampling2x

    x = np.random.default_rng(3).uniform(-1, 1, (2, 5, 7, 3)).astype(np.float32)
    expected = keras.layers.UpSampling2D(2, interpolation=interpolation)(x)
    layer = Upsampling2x(interpolation)
    np.testing.assert_allclose(np.asarray(layer(x)), expected, atol=1e-5)
    any_size = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, 3))])
    assert tuple(any_size(x[:, :3, :4]).shape) == (2, 6, 8, 3)
    with pytest.raises(ValueError, match="interpolation"):
        Upsampling2x("bicubic")
