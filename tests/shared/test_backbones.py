"""Backbones: blocks compute what their papers say, networks have the published sizes, the real
SqueezeNet file loads exactly, and feature extractors stop at the deepest requested layer."""

from __future__ import annotations

import gc

import cv2
import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from shared.backbones import blocks
from shared.backbones.alexnet import alexnet
from shared.backbones.factory import (
    build_backbone,
    canonical_name,
    feature_extractor,
    preprocessing_for,
)
from shared.backbones.googlenet import googlenet
from shared.backbones.layers import L2Pooling2D, LocalResponseNormalization
from shared.backbones.lenet5 import lenet5
from shared.backbones.nn4_small2 import nn4_small2
from shared.backbones.squeezenet import load_squeezenet_h5, squeezenet11
from shared.backbones.squeezenet import preprocess_input as squeezenet_preprocess
from shared.errors import InputError, WeightsError

SQUEEZENET_FILE = "squeezenet/squeezenet_weights_tf_dim_ordering_tf_kernels_notop.h5"
RNG = np.random.default_rng(0)


def _model(input_shape, build):
    inputs = keras.Input(input_shape)
    return keras.Model(inputs, build(inputs))


def _set_layer(model, name, kernel_value=None, bias_value=None):
    """Fill a conv layer's kernel and/or bias with constants (None keeps the current value)."""
    layer = model.get_layer(name)
    values = layer.get_weights()
    if kernel_value is not None:
        values[0] = np.full_like(values[0], kernel_value)
    if bias_value is not None:
        values[1] = np.full_like(values[1], bias_value)
    layer.set_weights(values)


def _weighted_layer_names(model) -> set[str]:
    return {layer.name for layer in model.layers if layer.weights}


# --- blocks -------------------------------------------------------------------------------


def test_conv_bn_act_integer_padding_is_symmetric_like_torch():
    """On an even input, stride 2, Keras 'same' pads (0, 1); padding=1 must pad (1, 1)."""
    image = np.arange(36, dtype=np.float32).reshape(1, 6, 6, 1)
    model = _model(
        (6, 6, 1),
        lambda x: blocks.conv_bn_act(
            x, 1, 3, strides=2, padding=1, activation=None, use_bn=False, name="c"
        ),
    )
    assert [layer.name for layer in model.layers[1:]] == ["c_pad", "c_conv"]
    _set_layer(model, "c_conv", kernel_value=1.0, bias_value=0.0)
    padded = np.pad(image[0, :, :, 0], 1)
    expected = np.array(
        [[padded[r : r + 3, c : c + 3].sum() for c in range(0, 6, 2)] for r in range(0, 6, 2)]
    )
    np.testing.assert_allclose(model.predict(image, verbose=0)[0, :, :, 0], expected)


def test_conv_bn_act_names_bias_and_activation():
    model = _model((8, 8, 3), lambda x: blocks.conv_bn_act(x, 4, 3, name="stem"))
    assert [layer.name for layer in model.layers[1:]] == ["stem_conv", "stem_bn", "stem_relu"]
    # A bias in front of batch normalisation is cancelled by it: none by default …
    assert len(model.get_layer("stem_conv").weights) == 1
    # … but kept without BN, and names can be overridden for published weight files.
    model = _model(
        (8, 8, 3),
        lambda x: blocks.conv_bn_act(
            x, 4, 3, use_bn=False, activation="tanh", name="s", conv_name="conv1"
        ),
    )
    assert [layer.name for layer in model.layers[1:]] == ["conv1", "s_tanh"]
    assert len(model.get_layer("conv1").weights) == 2
    assert model.output.shape == (None, 8, 8, 4)


def test_residual_basic_block_identity_adds_input():
    """With zero kernels the residual path is zero and the block returns relu(input)."""
    model = _model((8, 8, 16), lambda x: blocks.residual_basic_block(x, 16, name="b"))
    assert not any(layer.name.startswith("b_0_") for layer in model.layers)  # no projection
    assert model.count_params() == 2 * (3 * 3 * 16 * 16) + 2 * 4 * 16
    for name in ("b_1_conv", "b_2_conv"):
        _set_layer(model, name, kernel_value=0.0)
    x = RNG.normal(size=(2, 8, 8, 16)).astype(np.float32)
    np.testing.assert_allclose(model.predict(x, verbose=0), np.maximum(x, 0), atol=1e-6)


def test_residual_basic_block_projects_when_shape_changes():
    model = _model((56, 56, 64), lambda x: blocks.residual_basic_block(x, 128, strides=2, name="b"))
    assert model.output.shape == (None, 28, 28, 128)
    projection = model.get_layer("b_0_conv")
    assert projection.kernel.shape == (1, 1, 64, 128) and projection.strides == (2, 2)


def test_residual_bottleneck_block_equals_keras_resnet50(resnet50):
    """conv3_block1 of keras.applications.ResNet50 (a projection block with stride 2), given
    the same weights, computes exactly what residual_bottleneck_block computes."""
    block_input = resnet50.get_layer("conv2_block3_out").output
    block = _model(
        block_input.shape[1:],
        lambda x: blocks.residual_bottleneck_block(
            x, 128, strides=2, name="conv3_block1", bn_epsilon=1.001e-5
        ),
    )
    keras_names = {n for n in _weighted_layer_names(resnet50) if n.startswith("conv3_block1_")}
    assert _weighted_layer_names(block) == keras_names
    for name in keras_names:
        reference = resnet50.get_layer(name)
        values = [RNG.normal(size=w.shape).astype(np.float32) for w in reference.weights]
        if isinstance(reference, keras.layers.BatchNormalization):
            values[3] = np.abs(values[3]) + 0.5  # a variance
        else:
            values[1][:] = 0.0  # Keras's ResNet keeps conv biases; the block drops them
        reference.set_weights(values)
        block.get_layer(name).set_weights(values[:1] if len(values) == 2 else values)
    both = keras.Model(resnet50.input, [block_input, resnet50.get_layer("conv3_block1_out").output])
    features, expected = both.predict(RNG.uniform(size=(1, 224, 224, 3)), verbose=0)
    assert expected.shape == (1, 28, 28, 512)
    np.testing.assert_allclose(block.predict(features, verbose=0), expected, rtol=1e-4, atol=1e-4)


def test_inception_module_3a_branches_and_channel_order():
    model = _model(
        (28, 28, 192), lambda x: blocks.inception_module(x, 64, 96, 128, 16, 32, 32, name="i3a")
    )
    assert model.output.shape == (None, 28, 28, 256)
    kernels = 192 * 64 + 192 * 96 + 9 * 96 * 128 + 192 * 16 + 25 * 16 * 32 + 192 * 32
    assert model.count_params() == kernels + (64 + 96 + 128 + 16 + 32 + 32)
    # Zero kernels, one bias value per branch: the concatenation order becomes visible.
    for name, bias in [
        ("i3a_1x1_conv", 1.0),
        ("i3a_3x3_reduce_conv", 0.0),
        ("i3a_3x3_conv", 2.0),
        ("i3a_5x5_reduce_conv", 0.0),
        ("i3a_5x5_conv", 3.0),
        ("i3a_pool_proj_conv", 4.0),
    ]:
        _set_layer(model, name, kernel_value=0.0, bias_value=bias)
    out = model.predict(RNG.normal(size=(1, 28, 28, 192)), verbose=0)
    expected = np.repeat([1.0, 2.0, 3.0, 4.0], [64, 128, 32, 32])
    np.testing.assert_array_equal(out[0, 5, 7], expected)


def test_fire_module_names_and_expand_order():
    model = _model((55, 55, 64), lambda x: blocks.fire_module(x, 16, 64, name="fire2"))
    assert _weighted_layer_names(model) == {
        "fire2_squeeze1x1",
        "fire2_expand1x1",
        "fire2_expand3x3",
    }
    assert model.output.shape == (None, 55, 55, 128)
    assert model.get_layer("fire2_expand3x3").kernel.shape == (3, 3, 16, 64)
    _set_layer(model, "fire2_expand1x1", kernel_value=0.0, bias_value=1.0)
    _set_layer(model, "fire2_expand3x3", kernel_value=0.0, bias_value=2.0)
    out = model.predict(RNG.normal(size=(1, 55, 55, 64)), verbose=0)
    np.testing.assert_array_equal(out[0, 0, 0], np.repeat([1.0, 2.0], 64))


# --- parameter-free layers -----------------------------------------------------------------


def test_local_response_normalization_matches_tensorflow():
    """TF's LRN does not divide alpha by the window size; Caffe's and Torch's do."""
    x = RNG.uniform(0, 10, size=(2, 4, 4, 11)).astype(np.float32)
    ours = LocalResponseNormalization(5, alpha=1e-2, beta=0.75, k=2.0)(x)
    reference = tf.nn.local_response_normalization(
        x, depth_radius=2, bias=2.0, alpha=1e-2 / 5, beta=0.75
    )
    np.testing.assert_allclose(np.asarray(ours), reference.numpy(), rtol=1e-5)


def test_l2_pooling_is_root_sum_of_squares():
    x = RNG.normal(size=(1, 6, 6, 2)).astype(np.float32)
    out = np.asarray(L2Pooling2D(3, strides=3)(x))
    assert out.shape == (1, 2, 2, 2)
    expected = np.sqrt((x[0, 3:6, 0:3, 1] ** 2).sum())
    assert out[0, 1, 0, 1] == pytest.approx(expected, rel=1e-5)


# --- networks: published sizes --------------------------------------------------------------


@pytest.fixture(scope="module")
def resnet50():
    model = keras.applications.ResNet50(weights=None)
    yield model
    del model
    keras.backend.clear_session()
    gc.collect()


@pytest.mark.parametrize(
    ("name", "published"),
    [("vgg16", 138_357_544), ("vgg19", 143_667_240), ("inception_v3", 23_851_784)],
)
def test_keras_applications_parameter_counts(name, published):
    model = build_backbone(name)
    assert model.count_params() == published
    del model
    keras.backend.clear_session()
    gc.collect()


def test_resnet50_parameter_count(resnet50):
    assert resnet50.count_params() == 25_636_712


def test_lenet5():
    model = lenet5()
    assert model.count_params() == 61_706  # "about 60 thousand"
    assert model.get_layer("c5").output.shape == (None, 1, 1, 120)
    assert model.output.shape == (None, 10)


def test_alexnet_variants():
    model = alexnet()
    assert model.count_params() == 60_965_224  # the paper's two-GPU grouped network
    assert model.get_layer("conv1").output.shape == (None, 55, 55, 96)
    assert model.get_layer("conv2").kernel.shape == (5, 5, 48, 256)  # half the channels
    assert model.get_layer("pool5").output.shape == (None, 6, 6, 256)
    assert model.output.shape == (None, 1000)
    assert alexnet(grouped=False).count_params() == 62_378_344


def test_googlenet_shapes_and_size():
    model = googlenet()
    assert model.count_params() == 6_998_552
    widths = {
        "inception_3a": (28, 256),
        "inception_3b": (28, 480),
        "inception_4a": (14, 512),
        "inception_4d": (14, 528),
        "inception_4e": (14, 832),
        "inception_5b": (7, 1024),
    }
    for name, (size, channels) in widths.items():
        assert model.get_layer(f"{name}_output").output.shape == (None, size, size, channels)
    assert model.output.shape == (None, 1000)


def test_nn4_small2_size_names_and_unit_embedding():
    model = nn4_small2()
    assert model.count_params() == 3_743_280
    names = {layer.name for layer in model.layers}
    assert {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3", "dense_layer"} <= names
    for block in ("3a", "3b", "4a", "5a", "5b"):
        assert {f"inception_{block}_3x3_conv1", f"inception_{block}_3x3_bn2"} <= names
        assert {f"inception_{block}_pool_conv", f"inception_{block}_1x1_bn"} <= names
    for block in ("3c", "4e"):  # the reduction blocks have no 1x1 and no pool projection
        assert f"inception_{block}_5x5_conv2" in names
        assert f"inception_{block}_1x1_conv" not in names
    assert model.get_layer("bn1").epsilon == pytest.approx(1e-5)
    expected_shapes = {
        "3a": (12, 256),
        "3b": (12, 320),
        "3c": (6, 640),
        "4a": (6, 640),
        "4e": (3, 1024),
        "5a": (3, 736),
        "5b": (3, 736),
    }
    for block, (size, channels) in expected_shapes.items():
        concat = model.get_layer(f"inception_{block}_concat")
        assert concat.output.shape == (None, size, size, channels)
    embedding = model.predict(RNG.uniform(size=(3, 96, 96, 3)), verbose=0)
    assert embedding.shape == (3, 128)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, rtol=1e-5)
    assert not np.allclose(embedding[0], embedding[1])


def test_squeezenet_sizes():
    # 1,235,496 is SqueezeNet 1.1's published size with its 1000-class conv10.
    assert squeezenet11(include_top=True, input_shape=(227, 227, 3)).count_params() == 1_235_496
    model = squeezenet11(input_shape=(227, 227, 3))
    assert model.count_params() == 722_496
    assert model.output.shape == (None, 13, 13, 512)


# --- SqueezeNet: the real ImageNet weights ------------------------------------------------


def _h5_arrays(path):
    """(kernel, bias) per Keras-1 layer name, found by walking the file, not via the loader."""
    arrays = {}

    def collect(name, item):
        weight_names = item.attrs.get("weight_names", []) if isinstance(item, h5py.Group) else []
        if len(weight_names):
            values = [np.asarray(item[weight.decode()]) for weight in weight_names]
            kernel = next(value for value in values if value.ndim == 4)
            bias = next(value for value in values if value.ndim == 1)
            arrays[name] = (kernel, bias)

    with h5py.File(path, "r") as h5:
        h5.visititems(collect)
    return arrays


@pytest.fixture(scope="module")
def squeezenet_imagenet(weights_dir):
    path = weights_dir / SQUEEZENET_FILE
    return path, squeezenet11(weights=path)


def test_squeezenet_loads_every_kernel_by_name(squeezenet_imagenet):
    path, model = squeezenet_imagenet
    file_arrays = _h5_arrays(path)
    assert len(file_arrays) == 1 + 8 * 3  # conv1 and three convolutions per fire module
    for h5_name, (kernel, bias) in file_arrays.items():
        layer = model.get_layer(h5_name.replace("/", "_"))
        np.testing.assert_array_equal(layer.kernel.numpy(), kernel)
        np.testing.assert_array_equal(layer.bias.numpy(), bias)


def test_squeezenet_features_of_a_real_photo(squeezenet_imagenet, data_dir):
    _, model = squeezenet_imagenet
    bgr = cv2.imread(str(data_dir / "style/neural_style_inputs/tubingen.jpg"))
    rgb = cv2.resize(bgr, (227, 227), interpolation=cv2.INTER_AREA)[..., ::-1]
    features = model.predict(squeezenet_preprocess(rgb[None]), verbose=0)
    assert features.shape == (1, 13, 13, 512)
    assert np.isfinite(features).all()
    active = (features > 0).mean()
    assert 0.01 < active < 0.9  # ReLU features: sparse but alive
    assert features.std() > 0.1
    # Channels respond differently to the photo: not a constant map.
    assert np.unique(features.mean(axis=(0, 1, 2)).round(3)).size > 100


def test_squeezenet_preprocessing_is_caffe_style():
    rgb = RNG.integers(0, 256, size=(2, 5, 5, 3), dtype=np.uint8)
    expected = keras.applications.imagenet_utils.preprocess_input(
        rgb.astype(np.float32), mode="caffe"
    )
    np.testing.assert_allclose(squeezenet_preprocess(rgb), expected, rtol=1e-6)
    assert squeezenet_preprocess(rgb)[0, 0, 0, 0] == pytest.approx(rgb[0, 0, 0, 2] - 103.939)


def test_squeezenet_weights_errors(weights_dir, tmp_path):
    with_top = squeezenet11(include_top=True, input_shape=(227, 227, 3))
    with pytest.raises(WeightsError, match="conv10"):
        load_squeezenet_h5(with_top, weights_dir / SQUEEZENET_FILE)
    not_h5 = tmp_path / "weights.h5"
    not_h5.write_text("not an HDF5 file")
    with pytest.raises(WeightsError, match=r"weights\.h5"):
        squeezenet11(weights=not_h5)
    with pytest.raises(WeightsError, match="not found"):
        squeezenet11(weights=tmp_path / "absent.h5")


def test_squeezenet_imagenet_through_the_resolver(offline_weights):
    model = squeezenet11(weights="imagenet")
    np.testing.assert_array_equal(
        model.get_layer("conv1").bias.numpy(),
        _h5_arrays(offline_weights / SQUEEZENET_FILE)["conv1"][1],
    )


# --- factory and feature extractors --------------------------------------------------------


def test_names_are_matched_loosely_and_unknown_ones_rejected():
    assert canonical_name("SqueezeNet-1.1") == "squeezenet11"
    assert canonical_name("nn4.small2") == "nn4_small2"
    assert canonical_name("InceptionV3") == "inception_v3"
    with pytest.raises(InputError, match="unknown backbone 'vgg11'"):
        build_backbone("vgg11")
    with pytest.raises(InputError, match="no published ImageNet"):
        build_backbone("lenet5", weights="imagenet")
    with pytest.raises(InputError, match="no headless form"):
        build_backbone("alexnet", include_top=False)


@pytest.mark.parametrize(
    ("name", "keras_module"),
    [("vgg19", "vgg19"), ("resnet50", "resnet50"), ("inception_v3", "inception_v3")],
)
def test_preprocessing_equals_keras_and_keeps_the_input(name, keras_module):
    rgb = RNG.uniform(0, 255, size=(1, 4, 4, 3)).astype(np.float32)
    original = rgb.copy()
    expected = getattr(keras.applications, keras_module).preprocess_input(rgb.copy())
    np.testing.assert_allclose(preprocessing_for(name)(rgb), expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(rgb, original)


def test_vgg19_feature_extractor_is_truncated():
    wanted = ["block1_conv1", "block2_conv1", "block4_conv2"]
    model = feature_extractor("vgg19", wanted)
    names = [layer.name for layer in model.layers]
    assert names[-1] == "block4_conv2"
    assert not {"block4_conv3", "block4_conv4", "block4_pool", "fc1"} & set(names)
    assert not any(name.startswith("block5") for name in names)
    # Weights up to block4_conv2 only: (3x3 x in + 1) x out for each convolution.
    widths = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256)]
    widths += [(256, 256)] * 3 + [(256, 512), (512, 512)]
    assert model.count_params() == sum((9 * c_in + 1) * c_out for c_in, c_out in widths)
    outputs = model.predict(RNG.uniform(size=(1, 64, 48, 3)), verbose=0)
    assert [o.shape for o in outputs] == [(1, 64, 48, 64), (1, 32, 24, 128), (1, 8, 6, 512)]


def test_squeezenet_feature_extractor_with_real_weights(weights_dir):
    model = feature_extractor(
        "squeezenet-1.1", ["fire5_concat", "fire2_concat"], weights=weights_dir / SQUEEZENET_FILE
    )
    assert model.layers[-1].name == "fire5_concat"  # fire6 … fire9 are not built in
    assert not any(layer.name.startswith(("fire6", "fire9")) for layer in model.layers)
    deep, shallow = model.predict(RNG.uniform(0, 255, size=(1, 64, 64, 3)), verbose=0)
    assert shallow.shape == (1, 15, 15, 128) and deep.shape == (1, 7, 7, 256)


def test_feature_extractor_fixed_size_network_and_unknown_layer():
    model = feature_extractor("nn4_small2", ["inception_3a_concat"])
    assert model.predict(RNG.uniform(size=(1, 96, 96, 3)), verbose=0).shape == (1, 12, 12, 256)
    assert "dense_layer" not in {layer.name for layer in model.layers}
    with pytest.raises(InputError, match="no layer block9_conv1"):
        feature_extractor("vgg16", ["block1_conv1", "block9_conv1"])


def test_preprocessing_accepts_tensors_for_differentiable_pipelines():
    rgb = RNG.uniform(0, 255, size=(1, 3, 3, 3)).astype(np.float32)
    for name in ("squeezenet11", "nn4_small2", "inception_v3"):
        preprocess = preprocessing_for(name)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(preprocess(tf.constant(rgb))), preprocess(rgb), rtol=1e-6
        )


@pytest.mark.filterwarnings("ignore:Skipping nested container")  # Keras, before its error
def test_keras_weights_file_round_trip_and_mismatch(tmp_path):
    trained = lenet5()
    path = tmp_path / "lenet5.weights.h5"
    trained.save_weights(path)
    reloaded = build_backbone("LeNet-5", weights=path)
    for saved, loaded in zip(trained.weights, reloaded.weights, strict=True):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy())
    with pytest.raises(WeightsError, match=r"lenet5\.weights\.h5: does not fit googlenet"):
        googlenet(weights=path)
    with pytest.raises(WeightsError, match="not found"):
        nn4_small2(weights=tmp_path / "absent.weights.h5")
