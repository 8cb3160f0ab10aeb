"""One entry point for every backbone: the networks built here and those of keras.applications.

``build_backbone("vgg19", weights="imagenet", include_top=False)`` and
``feature_extractor("squeezenet11", ["fire2_concat", "fire5_concat"], weights="imagenet")``
are all an app needs; ``preprocessing_for(name)`` gives the matching input preprocessing.
Names are matched loosely (case, ``-``, ``_`` and ``.`` ignored), so ``"SqueezeNet-1.1"``,
``"nn4.small2"`` and ``"InceptionV3"`` work too.

VGG-16/19, ResNet-50 and InceptionV3 come from ``keras.applications`` unchanged (layer names
such as ``block4_conv2`` and ``conv3_block1_out`` are theirs); ``weights="imagenet"`` makes
Keras download its file on first use, which needs a connection.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from shared.backbones import alexnet, googlenet, lenet5, nn4_small2, squeezenet
from shared.backbones.preprocessing import caffe_bgr_mean, scale_to_symmetric_unit
from shared.errors import InputError


@dataclass(frozen=True)
class Backbone:
    """How to build one network and feed it.

    ``headless``: whether ``include_top=False`` gives the network without its classifier.
    Networks without that form end in dense layers, so they also need a fixed input size.
    ``top_by_default``: what ``include_top=None`` means. ``default_input_shape``: used when
    none is given (``None`` lets the builder choose). ``imagenet``: whether
    ``weights="imagenet"`` exists.
    """

    build: Callable[..., keras.Model]
    preprocess_input: Callable[[Any], Any]
    headless: bool
    top_by_default: bool = True
    default_input_shape: tuple[int | None, ...] | None = None
    imagenet: bool = True


def _built_here(
    module, builder: str, *, headless: bool, top_by_default: bool = True, imagenet: bool = False
) -> Backbone:
    """A network of this package: its module provides ``preprocess_input`` and ``INPUT_SHAPE``."""
    return Backbone(
        getattr(module, builder),
        module.preprocess_input,
        headless=headless,
        top_by_default=top_by_default,
        default_input_shape=module.INPUT_SHAPE,
        imagenet=imagenet,
    )


BACKBONES: dict[str, Backbone] = {
    "lenet5": _built_here(lenet5, "lenet5", headless=False),
    "alexnet": _built_here(alexnet, "alexnet", headless=False),
    "googlenet": _built_here(googlenet, "googlenet", headless=True),
    "nn4_small2": _built_here(nn4_small2, "nn4_small2", headless=False),
    "squeezenet11": _built_here(
        squeezenet, "squeezenet11", headless=True, top_by_default=False, imagenet=True
    ),
    # keras.applications: VGG and ResNet-50 were trained on Caffe-style inputs (BGR, means
    # subtracted), InceptionV3 on [-1, 1]; these functions equal Keras's own
    # preprocess_input but never modify their argument.
    "vgg16": Backbone(keras.applications.VGG16, caffe_bgr_mean, headless=True),
    "vgg19": Backbone(keras.applications.VGG19, caffe_bgr_mean, headless=True),
    "resnet50": Backbone(keras.applications.ResNet50, caffe_bgr_mean, headless=True),
    "inception_v3": Backbone(
        keras.applications.InceptionV3, scale_to_symmetric_unit, headless=True
    ),
}


def _normalised(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_BY_NORMALISED_NAME = {_normalised(name): name for name in BACKBONES}


def canonical_name(name: str) -> str:
    """The registry key for ``name`` (``"SqueezeNet-1.1"`` -> ``"squeezenet11"``)."""
    try:
        return _BY_NORMALISED_NAME[_normalised(name)]
    except KeyError:
        raise InputError(
            f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}"
        ) from None


def preprocessing_for(name: str) -> Callable[[Any], Any]:
    """The ``preprocess_input`` function (RGB 0-255 in) that network ``name`` expects."""
    return BACKBONES[canonical_name(name)].preprocess_input


def build_backbone(
    name: str,
    weights: str | Path | None = None,
    input_shape: tuple[int | None, ...] | None = None,
    include_top: bool | None = None,
) -> keras.Model:
    """Build network ``name`` with ``weights`` None, ``"imagenet"`` (where published) or a path.

    ``include_top=None`` means the network's usual form: a classifier, except SqueezeNet whose
    only ImageNet file has no top. ``input_shape=None`` means the network's default size.
    """
    key = canonical_name(name)
    backbone = BACKBONES[key]
    if include_top is None:
        include_top = backbone.top_by_default
    if input_shape is None:
        input_shape = backbone.default_input_shape
    if weights == "imagenet" and not backbone.imagenet:
        raise InputError(f"{key} has no published ImageNet weights; use None or a weights file")
    if not backbone.headless:
        if not include_top:
            raise InputError(
                f"{key} has no headless form; use feature_extractor() for its inner layers"
            )
        return backbone.build(weights=weights, input_shape=input_shape)
    return backbone.build(weights=weights, input_shape=input_shape, include_top=include_top)


def feature_extractor(
    name: str,
    layer_names: Sequence[str],
    weights: str | Path | None = None,
    input_shape: tuple[int | None, ...] | None = (None, None, 3),
) -> keras.Model:
    """A model from the input to the outputs of ``layer_names``, in that order.

    Calling it gives a list of tensors, one per name; with a single name Keras returns that
    tensor alone, not a list of one.

    The backbone is built without its classifier where it has a headless form, and the
    returned model holds only the layers on a path from the input to a requested layer, so
    nothing after the deepest requested layer is computed (with Gatys's ``block5_conv1`` as
    the deepest, none of VGG-19's ``block5_conv2`` … ``block5_pool``, nor its classifier).
    ``input_shape=(None, None, 3)`` keeps any image size for fully convolutional networks;
    those with a fixed input (LeNet-5, AlexNet, nn4.small2) use their own size whatever is
    passed unless it is a complete shape.
    """
    key = canonical_name(name)
    backbone = BACKBONES[key]
    if not backbone.headless and (input_shape is None or None in input_shape):
        input_shape = backbone.default_input_shape
    model = build_backbone(
        key, weights=weights, input_shape=input_shape, include_top=not backbone.headless
    )
    available = {layer.name for layer in model.layers}
    if missing := [layer for layer in layer_names if layer not in available]:
        raise InputError(
            f"{key} has no layer {', '.join(missing)}; its layers are "
            f"{', '.join(layer.name for layer in model.layers)}"
        )
    outputs = [model.get_layer(layer).output for layer in layer_names]
    return keras.Model(model.input, outputs, name=f"{key}_features")
