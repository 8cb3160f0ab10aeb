"""The feature networks style transfer reads content and style from: VGG-19 or SqueezeNet 1.1.

Both come from ``shared.backbones`` (this module only chooses layers and finds weights), and
each is cut after the deepest layer used, so nothing beyond it is computed.

* VGG-19 with ImageNet weights, the network of Gatys et al. and of the course: style on
  ``block1_conv1`` … ``block5_conv1`` and content on ``block4_conv2`` (the course's conv4_2;
  ``block5_conv2``, as the keras.io example, is the other usual choice). Its weights file (80 MB)
  is looked for in the Keras cache and ``$CONVNET_APPS_WEIGHTS_DIR`` before Keras downloads it.
* SqueezeNet 1.1 with its real ImageNet weights (3 MB, in the weights catalogue) for machines
  without VGG-19's file. Measured on the classic images (``reference/style.md``): style on
  conv1 and fire2 … fire7 with content on fire7 give a clear transfer; fire8/fire9 for style
  or fire6 for content give coloured speckle.
"""

from __future__ import annotations

import contextlib
import io
import os
import socket
import sys
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import keras
import tensorflow as tf

from apps.style_transfer.optimize import Features
from apps.style_transfer.settings import MODELS, PRECISIONS
from shared.backbones import feature_extractor, preprocessing_for
from shared.errors import InputError, WeightsError
from shared.weights import locate_file

VGG19_NOTOP_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"
VGG19_URL = f"https://storage.googleapis.com/tensorflow/keras-applications/vgg19/{VGG19_NOTOP_FILE}"
VGG19_MD5 = "253f8cb515780f3b799900260a226db6"  # as keras.applications.vgg19 checks it


@dataclass(frozen=True)
class Network:
    """A backbone of ``shared.backbones`` and the layers style transfer reads from it."""

    name: str
    backbone: str
    content_layer: str
    style_layers: tuple[str, ...]


NETWORKS = {
    "vgg19": Network(
        name="vgg19",
        backbone="vgg19",
        content_layer="block4_conv2",
        style_layers=tuple(f"block{block}_conv1" for block in range(1, 6)),
    ),
    "squeezenet": Network(
        name="squeezenet",
        backbone="squeezenet11",
        content_layer="fire7_concat",
        style_layers=("relu_conv1", *(f"fire{block}_concat" for block in range(2, 8))),
    ),
}


def keras_cache_dir() -> Path:
    """Where ``keras.utils.get_file`` keeps downloaded models (``$KERAS_HOME/models``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "models"


def _offline_reason(url: str) -> str | None:
    """Why ``url`` cannot be fetched from here (its host's name does not resolve), or None.

    Asked before Keras's download, which would announce itself ("Downloading data from ...")
    and then fail: offline, the one line a user sees is the fallback notice.
    """
    host = urllib.parse.urlsplit(url).hostname or url
    try:
        socket.getaddrinfo(host, 443)
    except OSError as error:  # socket.gaierror: no network or no name server
        return f"{host} cannot be resolved, offline? ({error.strerror or error})"
    return None


def vgg19_weights() -> Path:
    """The VGG-19 no-top ImageNet weights: local copies first, then Keras's download.

    Local places, in order: the Keras cache, then our resolver (``$CONVNET_APPS_WEIGHTS_DIR``
    by file name, packages, our cache), which never downloads this uncatalogued file. The
    download is Keras's own (into its cache, checked against Keras's MD5), so a file fetched
    once serves ``keras.applications`` too; it is not attempted when the host is unreachable.
    """
    cached = keras_cache_dir() / VGG19_NOTOP_FILE
    if cached.is_file():
        return cached
    local = locate_file("vgg19", VGG19_NOTOP_FILE)
    if local is not None:
        return local
    reason = _offline_reason(VGG19_URL)
    if reason is None:
        try:
            # Keras announces its download and draws a progress bar on stdout, where --json
            # output goes: on a terminal it is shown on stderr, piped it is dropped.
            shown = sys.stderr if sys.stderr.isatty() else io.StringIO()
            with contextlib.redirect_stdout(shown):
                downloaded = keras.utils.get_file(
                    VGG19_NOTOP_FILE, VGG19_URL, cache_subdir="models", file_hash=VGG19_MD5
                )
            return Path(downloaded)
        except Exception as error:  # Keras raises a bare Exception for a failed fetch
            reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    raise WeightsError(
        f"weights file {VGG19_NOTOP_FILE} (VGG-19) not found and the download failed "
        f"({reason}). Provide it in one of three ways: place it in {keras_cache_dir()}, "
        f"set CONVNET_APPS_WEIGHTS_DIR to a folder containing it, or download it from "
        f"{VGG19_URL} on a connected machine"
    )


def _weights_for(network: Network) -> str | Path:
    return vgg19_weights() if network.name == "vgg19" else "imagenet"


def choose_network(model: str, notice: Callable[[str], None]) -> tuple[Network, str | Path]:
    """The network for ``--model`` and its weights; ``auto`` prefers VGG-19 when it can be had.

    An unavailable VGG-19 under ``auto`` is not an error: SqueezeNet's 3 MB file stands in,
    and ``notice`` says so in one line.
    """
    if model not in MODELS:
        raise InputError(f"--model must be one of {', '.join(MODELS)}, not {model!r}")
    if model != "auto":
        network = NETWORKS[model]
        return network, _weights_for(network)
    try:
        return NETWORKS["vgg19"], vgg19_weights()
    except WeightsError:
        notice(
            f"VGG-19 weights ({VGG19_NOTOP_FILE}) are not available here; using SqueezeNet 1.1 "
            "(use --model vgg19 for the reason)"
        )
        network = NETWORKS["squeezenet"]
        return network, _weights_for(network)


def build_features(
    network: Network,
    weights: str | Path | None,
    content_layer: str | None = None,
    style_layers: Sequence[str] | None = None,
    precision: str = "float32",
) -> tuple[Features, str, tuple[str, ...]]:
    """The feature function for the optimiser and the layers it reads.

    The function maps a (1, H, W, 3) RGB image in [0, 255] to [content activation, style
    activations...] in float32, the network's own preprocessing included (so the gradient
    flows back to the pixels). ``precision`` is the network's arithmetic (see ``PRECISIONS``).
    """
    if precision not in PRECISIONS:
        raise InputError(f"--precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    content_layer = content_layer or network.content_layer
    style_layers = tuple(style_layers or network.style_layers)
    # Keras layers take the global dtype policy when they are built, so the policy is set for
    # the build only and put back, leaving later models (and other apps) untouched.
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if precision == "bfloat16" else "float32")
    try:
        model = feature_extractor(
            network.backbone,
            [content_layer, *style_layers],
            weights=None if weights is None else str(weights),
        )
    finally:
        keras.config.set_dtype_policy(previous_policy)
    preprocess = preprocessing_for(network.backbone)

    def features(image):
        return [tf.cast(activation, tf.float32) for activation in model(preprocess(image))]

    return features, content_layer, style_layers
