"""Darknet networks (``.cfg`` + ``.weights``) imported into Keras 3 functional models.

Three steps, each usable alone:

1. ``plan_network(sections)`` walks the cfg once, computing every layer's output shape with
   Darknet's own arithmetic and the exact layout of each convolution's parameters in the
   ``.weights`` file. Problems (an unknown section, a route to a missing layer, a head whose
   filter count does not match its classes) surface here as ``InputError`` naming the file,
   line and section.
2. ``read_darknet_weights(path, plan)`` reads the header and slices the float32 body into
   per-layer arrays, refusing a file whose length does not match the cfg (``WeightsError`` with
   expected and actual byte counts).
3. ``build_model(plan, parameters)`` creates the Keras layers section by section. Convolution
   padding, max-pool padding and ``reorg`` follow Darknet exactly rather than the nearest Keras
   default (Darknet pads stride-2 convolutions symmetrically, unlike Keras ``'same'``).

``load_darknet(cfg, weights)`` runs all three. The result is not cached: converting
Yolo-Fastest takes about 0.4-0.5 s, less than loading the same model from a ``.keras`` file
(0.6-0.8 s; ``bench/bench_detect_cars.py`` prints both), because either way Keras builds
every layer, and reading Darknet's flat float32 file is cheaper than unzipping HDF5.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np

from apps.car_detection.cfg import Section, read_cfg
from apps.car_detection.layers import ChannelGroup, DarknetMaxPool, DarknetReorg, DetectionHead
from shared.errors import InputError, WeightsError
from shared.runtime import tensorflow_model

# Darknet's CPU inference divides by sqrt(variance) + .000001f and OpenCV by
# sqrt(variance + 1e-6); the two agree to float precision on real weights, and the second form
# is also what a Keras BatchNormalization computes. (The 1e-5 of Darknet's cuDNN path moves the
# real Yolo-Fastest outputs by up to 7e-4, measured.)
BATCH_NORM_EPSILON = 1e-6
ACTIVATIONS = ("linear", "leaky", "relu", "logistic", "mish", "swish")
LEAKY_SLOPE = 0.1
HEAD_TYPES = ("yolo", "region")
HEADER_VERSION = (0, 2, 5)

Shape = tuple[int, int, int]  # (height, width, channels), as a layer's output


@dataclass(frozen=True)
class ConvSpec:
    """A ``[convolutional]`` layer's geometry and its parameter layout in the weights file.

    The file holds, in this order: ``filters`` biases (the BN beta when batch-normalised), then
    for BN the gamma, running mean and running variance (``filters`` each), then the kernel as
    (filters, in_channels / groups, size, size).
    """

    filters: int
    in_channels: int
    size: int
    stride: int
    padding: int
    groups: int
    batch_normalize: bool
    activation: str

    @property
    def kernel_shape(self) -> tuple[int, int, int, int]:
        return (self.filters, self.in_channels // self.groups, self.size, self.size)

    def array_shapes(self) -> dict[str, tuple[int, ...]]:
        """Parameter name -> shape, in the order the arrays appear in the weights file."""
        vector = (self.filters,)
        shapes: dict[str, tuple[int, ...]] = {"bias": vector}
        if self.batch_normalize:
            shapes |= {"gamma": vector, "mean": vector, "variance": vector}
        shapes["kernel"] = self.kernel_shape
        return shapes

    @property
    def parameter_count(self) -> int:
        return sum(int(np.prod(shape)) for shape in self.array_shapes().values())


@dataclass(frozen=True)
class LayerPlan:
    """One Darknet layer: its section, output shape, the layers it reads and (for conv) weights."""

    section: Section
    shape: Shape
    sources: tuple[int, ...] = ()
    conv: ConvSpec | None = None


@dataclass(frozen=True)
class NetworkPlan:
    """The whole network as Darknet sees it: input shape and one plan per layer."""

    input_shape: Shape
    layers: tuple[LayerPlan, ...]
    source: str = "<cfg>"

    @property
    def convolutions(self) -> list[tuple[int, ConvSpec]]:
        return [(i, layer.conv) for i, layer in enumerate(self.layers) if layer.conv is not None]

    @property
    def parameter_count(self) -> int:
        return sum(conv.parameter_count for _, conv in self.convolutions)

    @property
    def head_indices(self) -> list[int]:
        return [i for i, layer in enumerate(self.layers) if layer.section.type in HEAD_TYPES]


@dataclass
class DarknetModel:
    """A converted network: the Keras model plus what decoding and drawing need to know.

    ``model(images)`` takes a float32 batch (B, height, width, channels) of RGB values in 0..1,
    resized without letterboxing (as Darknet does), and returns one (B, rows, 5 + classes) array
    per head; see ``layers.DetectionHead`` for the row layout.
    """

    model: keras.Model
    width: int
    height: int
    classes: int
    # The DetectionHead arguments of each head (kind, anchors, classes, scale_x_y, input size),
    # for whoever decodes raw maps (``build_model(..., decode=False)``) or writes a loss.
    heads: list[dict] = field(default_factory=list)

    def predict_heads(self, images: np.ndarray) -> list[np.ndarray]:
        """Run the network on a resized batch on TensorFlow; always a list, one array per head.

        ``images`` is (B, height, width, channels): uint8 pixels (through ``pixel_model``) or
        float32 already in 0..1.
        """
        images = np.asarray(images)
        if images.dtype not in (np.uint8, np.float32):
            raise ValueError(f"images must be uint8 pixels or float32 in 0..1, not {images.dtype}")
        if images.dtype not in self._inference:
            model = self.pixel_model() if images.dtype == np.uint8 else self.model
            self._inference[images.dtype] = tensorflow_model(model, {})
        return self._inference[images.dtype](images)

    def pixel_model(self) -> keras.Model:
        """The network on uint8 pixels (B, height, width, channels), scaled by 1/255 inside.

        What inference runs (``apps.car_detection.network``): a quarter of the bytes of float32
        to hand over, and the multiply runs on the runtime's threads.
        """
        channels = self.model.inputs[0].shape[-1]
        pixels = keras.Input((self.height, self.width, channels), dtype="uint8", name="pixels")
        scaled = keras.layers.Rescaling(1 / 255, name="scale")(pixels)
        return keras.Model(pixels, self.model(scaled), name=f"{self.model.name}_pixels")

    _inference: dict = field(default_factory=dict, init=False, repr=False, compare=False)


# --- planning -------------------------------------------------------------------------------


def _layer_index(section: Section, reference: int, count: int) -> int:
    """Resolve a ``route``/``shortcut`` reference (negative = relative) to an absolute index."""
    index = section.index + reference if reference < 0 else reference
    if not 0 <= index < count:
        raise InputError(
            f"{section.where()}: refers to layer {reference}, which does not exist "
            f"before layer {section.index}"
        )
    return index


def _require_square_stride(section: Section, stride: int) -> None:
    if {section.get_int("stride_x", stride), section.get_int("stride_y", stride)} != {stride}:
        raise InputError(f"{section.where()}: different horizontal and vertical strides")


def _activation(section: Section) -> str:
    name = section.get_str("activation", "linear")
    if name not in ACTIVATIONS:
        raise InputError(
            f"{section.where()}: activation '{name}' not supported "
            f"(supported: {', '.join(ACTIVATIONS)})"
        )
    return name


def _plan_convolutional(section: Section, previous: Shape, _shapes: list[Shape]) -> LayerPlan:
    height, width, channels = previous
    size = section.get_int("size", 1)
    stride = section.get_int("stride", 1)
    _require_square_stride(section, stride)
    if section.get_int("dilation", 1) != 1:
        raise InputError(f"{section.where()}: dilated convolutions not supported")
    for unsupported in ("flipped", "antialiasing", "deform", "binary", "xnor"):
        if section.get_int(unsupported, 0):
            raise InputError(f"{section.where()}: option '{unsupported}' not supported")
    padding = size // 2 if section.get_int("pad", 0) else section.get_int("padding", 0)
    groups = section.get_int("groups", 1)
    filters = section.get_int("filters", 1)
    if groups < 1 or channels % groups or filters % groups:
        raise InputError(
            f"{section.where()}: groups={groups} must divide the {channels} input channels "
            f"and the {filters} filters"
        )
    out_height = (height + 2 * padding - size) // stride + 1
    out_width = (width + 2 * padding - size) // stride + 1
    if min(out_height, out_width, size, stride, filters) < 1:
        raise InputError(f"{section.where()}: gives an empty output for input {previous}")
    spec = ConvSpec(
        filters=filters,
        in_channels=channels,
        size=size,
        stride=stride,
        padding=padding,
        groups=groups,
        batch_normalize=bool(section.get_int("batch_normalize", 0)),
        activation=_activation(section),
    )
    return LayerPlan(section, (out_height, out_width, filters), conv=spec)


def _maxpool_geometry(section: Section) -> tuple[int, int, int]:
    """(size, stride, total padding) with Darknet's defaults: size = stride, padding = size - 1."""
    stride = section.get_int("stride", 1)
    size = section.get_int("size", stride)
    padding = section.get_int("padding", size - 1)
    _require_square_stride(section, stride)
    if section.get_int("maxpool_depth", 0) or section.get_int("antialiasing", 0):
        raise InputError(f"{section.where()}: maxpool_depth/antialiasing not supported")
    if min(size, stride) < 1 or padding < 0:
        raise InputError(f"{section.where()}: size and stride must be positive")
    return size, stride, padding


def _plan_maxpool(section: Section, previous: Shape, _shapes: list[Shape]) -> LayerPlan:
    height, width, channels = previous
    size, stride, padding = _maxpool_geometry(section)
    out_height = (height + padding - size) // stride + 1
    out_width = (width + padding - size) // stride + 1
    if min(out_height, out_width) < 1:
        raise InputError(f"{section.where()}: gives an empty output for input {previous}")
    return LayerPlan(section, (out_height, out_width, channels))


def _plan_avgpool(section: Section, previous: Shape, _shapes: list[Shape]) -> LayerPlan:
    return LayerPlan(section, (1, 1, previous[2]))


def _plan_route(section: Section, _previous: Shape, shapes: list[Shape]) -> LayerPlan:
    sources = tuple(_layer_index(section, i, len(shapes)) for i in section.get_ints("layers"))
    if not sources:
        raise InputError(f"{section.where()}: 'layers' is empty")
    groups = section.get_int("groups", 1)
    group_id = section.get_int("group_id", 0)
    if groups < 1 or not 0 <= group_id < groups:
        raise InputError(f"{section.where()}: needs groups >= 1 and 0 <= group_id < groups")
    spatial = {shapes[i][:2] for i in sources}
    if len(spatial) > 1:
        sizes = ", ".join(f"layer {i}: {shapes[i][0]}x{shapes[i][1]}" for i in sources)
        raise InputError(
            f"{section.where()}: joins layers of different sizes ({sizes}); "
            "the input width and height must be multiples of the network's stride (often 32)"
        )
    for i in sources:
        if shapes[i][2] % groups:
            raise InputError(
                f"{section.where()}: layer {i}'s {shapes[i][2]} channels do not split "
                f"into {groups} groups"
            )
    channels = sum(shapes[i][2] // groups for i in sources)
    height, width = spatial.pop()
    return LayerPlan(section, (height, width, channels), sources=sources)


def _plan_shortcut(section: Section, previous: Shape, shapes: list[Shape]) -> LayerPlan:
    references = section.get_ints("from")
    if len(references) != 1:
        raise InputError(f"{section.where()}: only a single 'from' layer is supported")
    source = _layer_index(section, references[0], len(shapes))
    if section.get_str("weights_type", "none") != "none":
        raise InputError(f"{section.where()}: weighted shortcuts not supported")
    if shapes[source] != previous:
        raise InputError(
            f"{section.where()}: adds layer {source} of shape {shapes[source]} "
            f"to the previous layer of shape {previous}; shapes must match"
        )
    _activation(section)
    return LayerPlan(section, previous, sources=(section.index - 1, source))


def _plan_upsample(section: Section, previous: Shape, _shapes: list[Shape]) -> LayerPlan:
    stride = section.get_int("stride", 2)
    if stride < 1 or section.get_float("scale", 1.0) != 1.0:
        raise InputError(f"{section.where()}: only a positive integer stride is supported")
    height, width, channels = previous
    return LayerPlan(section, (height * stride, width * stride, channels))


def _plan_reorg(section: Section, previous: Shape, _shapes: list[Shape]) -> LayerPlan:
    stride = section.get_int("stride", 1)
    if any(section.get_int(option, 0) for option in ("reverse", "flatten", "extra")):
        raise InputError(f"{section.where()}: reverse/flatten/extra reorg not supported")
    height, width, channels = previous
    if stride < 1 or height % stride or width % stride or channels % (stride * stride):
        raise InputError(
            f"{section.where()}: stride {stride} must divide the input {height}x{width} "
            f"and its square the {channels} channels"
        )
    return LayerPlan(section, (height // stride, width // stride, channels * stride * stride))


def _plan_dropout(section: Section, previous: Shape, _shapes: list[Shape]) -> LayerPlan:
    if not 0 <= section.get_float("probability", 0.5) < 1:
        raise InputError(f"{section.where()}: probability must be in [0, 1)")
    return LayerPlan(section, previous)


def _head_anchors(section: Section) -> tuple[list[list[float]], list[int]]:
    """(all anchors as (w, h) pairs, the indices this head uses)."""
    number = section.get_int("num", 1)
    values = section.get_floats("anchors", [])
    if len(values) != 2 * number:
        raise InputError(
            f"{section.where()}: expected {2 * number} anchor values for num={number}, "
            f"got {len(values)}"
        )
    pairs = [values[i : i + 2] for i in range(0, len(values), 2)]
    every_anchor = list(range(number))
    mask = section.get_ints("mask", every_anchor) if section.type == "yolo" else every_anchor
    if any(not 0 <= m < number for m in mask):
        raise InputError(f"{section.where()}: mask {mask} refers to anchors beyond num={number}")
    return pairs, mask


def _plan_head(section: Section, previous: Shape, _shapes: list[Shape]) -> LayerPlan:
    classes = section.get_int("classes", 20)
    _, mask = _head_anchors(section)
    if section.type == "region":
        if section.get_int("coords", 4) != 4 or not section.get_int("softmax", 0):
            raise InputError(f"{section.where()}: only coords=4 with softmax=1 is supported")
        if "tree" in section.options or "map" in section.options:
            raise InputError(f"{section.where()}: YOLO9000 class trees are not supported")
    elif section.get_int("new_coords", 0):
        raise InputError(f"{section.where()}: new_coords=1 (scaled YOLOv4) is not supported")
    expected = len(mask) * (5 + classes)
    if previous[2] != expected:
        raise InputError(
            f"{section.where()}: the previous layer has {previous[2]} channels but "
            f"{len(mask)} anchors x (5 + {classes} classes) needs {expected}"
        )
    return LayerPlan(section, previous, sources=(section.index - 1,))


_PLANNERS: dict[str, Callable[[Section, Shape, list[Shape]], LayerPlan]] = {
    "convolutional": _plan_convolutional,
    "maxpool": _plan_maxpool,
    "avgpool": _plan_avgpool,
    "route": _plan_route,
    "shortcut": _plan_shortcut,
    "upsample": _plan_upsample,
    "reorg": _plan_reorg,
    "dropout": _plan_dropout,
    "region": _plan_head,
    "yolo": _plan_head,
}


def plan_network(
    sections: Sequence[Section], input_size: tuple[int, int] | None = None
) -> NetworkPlan:
    """Walk the cfg computing every layer's shape and weights layout.

    ``input_size`` (width, height) overrides the ``[net]`` size; both must be positive.
    """
    net = sections[0]
    width, height = input_size or (net.get_int("width", 416), net.get_int("height", 416))
    channels = net.get_int("channels", 3)
    if min(width, height, channels) < 1:
        raise InputError(f"{net.where()}: width, height and channels must be positive")
    input_shape = (height, width, channels)
    layers: list[LayerPlan] = []
    shapes: list[Shape] = []
    for section in sections[1:]:
        planner = _PLANNERS.get(section.type)
        if planner is None:
            raise InputError(
                f"{section.where()}: section type not supported (supported: {', '.join(_PLANNERS)})"
            )
        layer = planner(section, shapes[-1] if shapes else input_shape, shapes)
        layers.append(layer)
        shapes.append(layer.shape)
    heads = [layer.section for layer in layers if layer.section.type in HEAD_TYPES]
    if not heads:
        raise InputError(f"{net.source}: no [yolo] or [region] layer, so nothing to detect with")
    classes = sorted({section.get_int("classes", 20) for section in heads})
    if len(classes) > 1:
        raise InputError(f"{net.source}: the heads disagree on the number of classes {classes}")
    return NetworkPlan(input_shape, tuple(layers), net.source)


# --- weights files --------------------------------------------------------------------------


def header_size(major: int, minor: int) -> int:
    """Bytes before the parameters of a ``.weights`` file of format ``major.minor``.

    12 bytes of version, then ``seen`` as int64 from format 0.2 on, int32 before: the
    original YOLOv2 weights are format 0.1 (16 bytes), Yolo-Fastest's 0.2.5 (20 bytes).
    """
    return 12 + (8 if major * 10 + minor >= 2 else 4)


def read_darknet_weights(path: Path | str, plan: NetworkPlan) -> list[dict[str, np.ndarray]]:
    """Read a ``.weights`` file into one dict of arrays per convolution, in cfg order.

    The file must hold exactly the parameters the cfg implies; anything else is a
    ``WeightsError`` giving expected and actual byte counts (a truncated download, or weights
    for another cfg).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"{path}: weights file not found") from None
    if len(data) < 16:
        raise WeightsError(f"{path}: {len(data)} bytes is too short for a Darknet weights header")
    major, minor, _revision = struct.unpack_from("<3i", data)
    if major > 1000 or minor > 1000:
        raise WeightsError(
            f"{path}: transposed Darknet weights (version {major}.{minor}) are not supported"
        )
    header = header_size(major, minor)
    expected = header + 4 * plan.parameter_count
    if len(data) != expected:
        raise WeightsError(
            f"{path}: expected {expected} bytes for {plan.source} ({header}-byte header + "
            f"{plan.parameter_count} float32 parameters), found {len(data)} bytes"
        )
    body = np.frombuffer(data, dtype="<f4", offset=header)
    parameters = []
    offset = 0
    for _, conv in plan.convolutions:
        arrays = {}
        for name, shape in conv.array_shapes().items():
            count = int(np.prod(shape))
            arrays[name] = body[offset : offset + count].reshape(shape).astype(np.float32)
            offset += count
        parameters.append(arrays)
    return parameters


def write_darknet_weights(
    path: Path | str,
    plan: NetworkPlan,
    parameters: Sequence[dict[str, np.ndarray]],
    version: tuple[int, int, int] = HEADER_VERSION,
    seen: int = 0,
) -> None:
    """Write per-convolution arrays as a Darknet ``.weights`` file (the inverse of reading).

    Used to export networks and, in the tests, to hand the same random weights to this
    importer and to OpenCV's.
    """
    convolutions = plan.convolutions
    if len(parameters) != len(convolutions):
        raise ValueError(f"{len(convolutions)} convolutions in the cfg, {len(parameters)} given")
    major, minor, revision = version
    seen_format = "<q" if major * 10 + minor >= 2 else "<i"
    chunks = [struct.pack("<3i", major, minor, revision), struct.pack(seen_format, seen)]
    for (index, conv), arrays in zip(convolutions, parameters, strict=True):
        for name, shape in conv.array_shapes().items():
            array = np.asarray(arrays[name], dtype="<f4")
            if array.shape != shape:
                raise ValueError(f"layer {index} {name}: shape {array.shape}, cfg needs {shape}")
            chunks.append(array.tobytes())
    Path(path).write_bytes(b"".join(chunks))


# --- building -------------------------------------------------------------------------------


def _activation_layer(name: str, layer_name: str) -> keras.layers.Layer | None:
    if name == "linear":
        return None
    if name == "leaky":
        return keras.layers.LeakyReLU(negative_slope=LEAKY_SLOPE, name=layer_name)
    keras_name = {"relu": "relu", "logistic": "sigmoid", "mish": "mish", "swish": "silu"}[name]
    return keras.layers.Activation(keras_name, name=layer_name)


def _apply_activation(tensor, name: str, index: int):
    layer = _activation_layer(name, f"{name}_{index}")
    return tensor if layer is None else layer(tensor)


def _convolution_layer(conv: ConvSpec, index: int, use_bias: bool) -> keras.layers.Layer:
    """Depthwise when every group is one channel (fast path), else grouped or plain Conv2D."""
    padding = "same" if conv.stride == 1 and 2 * conv.padding == conv.size - 1 else "valid"
    common = {"strides": conv.stride, "padding": padding, "use_bias": use_bias}
    common["name"] = f"conv_{index}"
    if conv.groups == conv.in_channels == conv.filters and conv.groups > 1:
        return keras.layers.DepthwiseConv2D(conv.size, **common)
    return keras.layers.Conv2D(conv.filters, conv.size, groups=conv.groups, **common)


def _keras_kernel(conv: ConvSpec, kernel: np.ndarray, depthwise: bool) -> np.ndarray:
    """Darknet (out, in/groups, kh, kw) -> Keras (kh, kw, in/groups, out).

    A depthwise kernel is (kh, kw, in, 1) in Keras, so there the Darknet out axis goes third.
    """
    return kernel.transpose(2, 3, 0, 1) if depthwise else kernel.transpose(2, 3, 1, 0)


def _build_convolutional(
    layer: LayerPlan, index: int, inputs: list, arrays: dict | None, fold: bool
):
    conv = layer.conv
    assert conv is not None
    (tensor,) = inputs
    folds = fold or not conv.batch_normalize
    conv_layer = _convolution_layer(conv, index, use_bias=folds)
    if conv.padding and conv_layer.padding == "valid":
        tensor = keras.layers.ZeroPadding2D(conv.padding, name=f"pad_{index}")(tensor)
    tensor = conv_layer(tensor)
    depthwise = isinstance(conv_layer, keras.layers.DepthwiseConv2D)
    if arrays is not None:
        kernel = _keras_kernel(conv, arrays["kernel"], depthwise)
        if conv.batch_normalize and fold:
            scale = arrays["gamma"] / np.sqrt(arrays["variance"] + BATCH_NORM_EPSILON)
            kernel = kernel * (scale[:, None] if depthwise else scale)
            conv_layer.set_weights([kernel, arrays["bias"] - arrays["mean"] * scale])
        else:
            conv_layer.set_weights([kernel, arrays["bias"]] if folds else [kernel])
    if conv.batch_normalize and not fold:
        norm = keras.layers.BatchNormalization(epsilon=BATCH_NORM_EPSILON, name=f"bn_{index}")
        tensor = norm(tensor)
        if arrays is not None:
            norm.set_weights([arrays["gamma"], arrays["bias"], arrays["mean"], arrays["variance"]])
    return _apply_activation(tensor, conv.activation, index)


def _build_maxpool(layer: LayerPlan, index: int, inputs: list, _arrays, _fold):
    (tensor,) = inputs
    size, stride, padding = _maxpool_geometry(layer.section)
    before = padding // 2
    height, width, _ = tensor.shape[1:]
    valid_fits = ((height - size) // stride + 1, (width - size) // stride + 1) == layer.shape[:2]
    name = f"maxpool_{index}"
    if stride == 1 and padding == size - 1:
        # Keras 'same' pads (size - 1) // 2 before and the rest after, exactly like Darknet here.
        return keras.layers.MaxPooling2D(size, 1, padding="same", name=name)(tensor)
    if before == 0 and valid_fits:
        return keras.layers.MaxPooling2D(size, stride, padding="valid", name=name)(tensor)
    return DarknetMaxPool(size, stride, before, padding - before, name=name)(tensor)


def _build_avgpool(_layer: LayerPlan, index: int, inputs: list, _arrays, _fold):
    return keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"avgpool_{index}")(inputs[0])


def _build_route(layer: LayerPlan, index: int, inputs: list, _arrays, _fold):
    groups = layer.section.get_int("groups", 1)
    group_id = layer.section.get_int("group_id", 0)
    if groups > 1:
        inputs = [
            ChannelGroup(groups, group_id, name=f"route_{index}_group_{n}")(tensor)
            for n, tensor in enumerate(inputs)
        ]
    if len(inputs) == 1:
        return inputs[0]
    return keras.layers.Concatenate(axis=-1, name=f"route_{index}")(inputs)


def _build_shortcut(layer: LayerPlan, index: int, inputs: list, _arrays, _fold):
    tensor = keras.layers.Add(name=f"shortcut_{index}")(inputs)
    return _apply_activation(tensor, _activation(layer.section), index)


def _build_upsample(layer: LayerPlan, index: int, inputs: list, _arrays, _fold):
    stride = layer.section.get_int("stride", 2)
    return keras.layers.UpSampling2D(stride, interpolation="nearest", name=f"upsample_{index}")(
        inputs[0]
    )


def _build_reorg(layer: LayerPlan, index: int, inputs: list, _arrays, _fold):
    return DarknetReorg(layer.section.get_int("stride", 1), name=f"reorg_{index}")(inputs[0])


def _build_identity(_layer: LayerPlan, _index: int, inputs: list, _arrays, _fold):
    return inputs[0]


def _build_dropout(layer: LayerPlan, index: int, inputs: list, _arrays, _fold):
    """Identity at inference (as in OpenCV), Darknet's dropout when fine-tuning."""
    rate = layer.section.get_float("probability", 0.5)
    return keras.layers.Dropout(rate, name=f"dropout_{index}")(inputs[0])


_BUILDERS = {
    "convolutional": _build_convolutional,
    "maxpool": _build_maxpool,
    "avgpool": _build_avgpool,
    "route": _build_route,
    "shortcut": _build_shortcut,
    "upsample": _build_upsample,
    "reorg": _build_reorg,
    "dropout": _build_dropout,
    "region": _build_identity,
    "yolo": _build_identity,
}


def head_config(layer: LayerPlan, input_shape: Shape) -> dict:
    """The ``DetectionHead`` arguments for a ``[yolo]`` or ``[region]`` layer."""
    section = layer.section
    anchors, mask = _head_anchors(section)
    return {
        "kind": section.type,
        "anchors": [anchors[m] for m in mask],
        "classes": section.get_int("classes", 20),
        "scale_x_y": section.get_float("scale_x_y", 1.0),
        "input_width": input_shape[1],
        "input_height": input_shape[0],
    }


def build_model(
    plan: NetworkPlan,
    parameters: Sequence[dict[str, np.ndarray]] | None = None,
    *,
    fold_batch_norm: bool = True,
    decode: bool = True,
) -> DarknetModel:
    """Create the Keras functional model for ``plan``.

    ``parameters`` come from ``read_darknet_weights`` (None keeps Keras' random initialisation).
    ``fold_batch_norm`` merges each BN into its convolution (fewer ops, the inference default);
    without it BN layers are kept, e.g. for fine-tuning. ``decode=False`` returns the raw head
    maps instead of decoded rows, which is what a training loss wants.
    """
    image = keras.Input(plan.input_shape, name="image")
    outputs: list = []
    conv_arrays = iter(parameters) if parameters is not None else None
    for index, layer in enumerate(plan.layers):
        previous = outputs[-1] if outputs else image
        inputs = [outputs[i] for i in layer.sources] if layer.sources else [previous]
        arrays = next(conv_arrays) if conv_arrays is not None and layer.conv is not None else None
        outputs.append(_BUILDERS[layer.section.type](layer, index, inputs, arrays, fold_batch_norm))
    heads = [head_config(plan.layers[i], plan.input_shape) for i in plan.head_indices]
    head_tensors = [outputs[i] for i in plan.head_indices]
    if decode:
        head_tensors = [
            DetectionHead(**config, name=f"{config['kind']}_{i}")(outputs[i])
            for i, config in zip(plan.head_indices, heads, strict=True)
        ]
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(plan.source).stem).strip("_") or "darknet"
    model = keras.Model(image, head_tensors, name=name)
    return DarknetModel(model, plan.input_shape[1], plan.input_shape[0], heads[0]["classes"], heads)


def load_darknet(
    cfg: Path | str | Sequence[Section],
    weights: Path | str | None,
    *,
    input_size: tuple[int, int] | None = None,
    fold_batch_norm: bool = True,
) -> DarknetModel:
    """Parse ``cfg`` (a path, or sections already parsed and perhaps edited), read ``weights``
    (None: Keras' random initialisation) and build the model.

    ``input_size`` (width, height) replaces the cfg's; Darknet networks accept any multiple of
    their total stride (32 for the YOLO cfgs), and the weights do not depend on it.
    """
    sections = cfg if isinstance(cfg, Sequence) and not isinstance(cfg, str) else read_cfg(cfg)
    plan = plan_network(sections, input_size)
    parameters = read_darknet_weights(weights, plan) if weights is not None else None
    return build_model(plan, parameters, fold_batch_norm=fold_batch_norm)
