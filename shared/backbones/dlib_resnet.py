"""dlib's face-recognition ResNet (``dlib_face_recognition_resnet_model_v1``) in Keras 3.

Two halves:

1. A reader for dlib's own serialisation of the trained network (the ``.dat`` file shipped by
   the PyPI package ``face-recognition-models``), in plain Python and NumPy so that the project
   needs no dlib build. ``read_dlib_net`` returns the layers in forward order with their
   parameters as named NumPy arrays.
2. ``dlib_face_resnet``: the same network as a Keras functional model (150x150x3 chips in,
   a 128-d descriptor out, 5,614,592 parameters) with the weights copied from the file, and
   ``preprocess_input`` with dlib's exact input scaling.

The format and architecture facts come from dlib's ``dnn/core.h``, ``layers.h``, ``input.h``,
``tensor.h`` and ``serialize.h``, restated here where each is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops

from shared.backbones.blocks import conv_bn_act
from shared.errors import WeightsError
from shared.weights import resolve_file

CATALOGUE_NAME = "dlib-face-resnet"
DAT_FILENAME = "dlib_face_recognition_resnet_model_v1.dat"
CHIP_SIZE = 150
INPUT_SHAPE = (CHIP_SIZE, CHIP_SIZE, 3)  # fixed: dlib's input layer takes exactly 150x150
DESCRIPTOR_SIZE = 128

# The per-channel means stored in the model's input layer, float32(122.782) etc. in RGB order.
# Kept as a constant so that preprocessing needs no model file; the loader checks them.
RGB_MEANS = np.array([122.782, 117.001, 104.298], dtype=np.float32)
# dlib divides by 256, not 255 (input_rgb_image_sized::to_tensor).
INPUT_SCALE = np.float32(256.0)


# --------------------------------------------------------------------------------------
# dlib's serialisation
# --------------------------------------------------------------------------------------


@dataclass
class DlibLayer:
    """One layer of a dlib network as stored in the file.

    ``kind`` is dlib's layer name without its format version (``con``, ``affine``, ``relu``,
    ``max_pool``, ``avg_pool``, ``add_prev``, ``fc``, ``input_rgb_image_sized``), or
    ``tag_or_skip``: dlib writes tag and skip wrappers identically (a version number and
    nothing else), so the file cannot tell them apart nor say which tag an ``add_prev``
    reads; that wiring is fixed by the network's C++ type, rebuilt in ``dlib_face_resnet``.
    """

    kind: str
    attributes: dict[str, float | int] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class DlibNet:
    """A dlib network read from disk: the loss layer's name and the layers in forward order."""

    loss: str
    layers: list[DlibLayer]

    def arrays(self) -> dict[str, np.ndarray]:
        """All parameters named ``<kind>_<n>/<name>`` (n counts layers of that kind, from 0).

        Shapes are dlib's: ``con_n/filters`` (F, C, kh, kw), ``con_n/biases`` (F,),
        ``affine_n/gamma`` and ``affine_n/beta`` (C,), ``fc_n/weights`` (inputs, outputs).
        """
        named: dict[str, np.ndarray] = {}
        counts: dict[str, int] = {}
        for layer in self.layers:
            if not layer.arrays:
                continue
            index = counts.get(layer.kind, 0)
            counts[layer.kind] = index + 1
            for name, array in layer.arrays.items():
                named[f"{layer.kind}_{index}/{name}"] = array
        return named

    def kinds(self) -> list[str]:
        return [layer.kind for layer in self.layers]


class _DlibReader:
    """Sequential reader of dlib's primitive encodings; every short read is a truncation."""

    def __init__(self, data: bytes, path: Path):
        self.data = data
        self.pos = 0
        self.path = path

    def fail(self, what: str) -> WeightsError:
        return WeightsError(
            f"{self.path}: not a valid dlib network file ({what} at byte {self.pos})"
        )

    def take(self, count: int) -> bytes:
        if count < 0 or self.pos + count > len(self.data):
            raise self.fail("file ends early, truncated")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def integer(self) -> int:
        """dlib's packed integer: a control byte (low nibble = byte count, 0x80 = negative),
        then that many little-endian magnitude bytes (serialize.h, pack_int/unpack_int)."""
        control = self.take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise self.fail(f"bad integer control byte 0x{control:02x}")
        value = int.from_bytes(self.take(size), "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        """A float or double: packed int64 mantissa then packed int16 exponent (float_details)."""
        mantissa = self.integer()
        exponent = self.integer()
        try:
            return math.ldexp(mantissa, exponent)
        except OverflowError as err:
            raise self.fail("number out of range") from err

    def boolean(self) -> bool:
        """dlib writes bools as the ASCII characters '0' and '1'."""
        byte = self.take(1)
        if byte not in (b"0", b"1"):
            raise self.fail("bad boolean")
        return byte == b"1"

    def string(self) -> str:
        size = self.integer()
        if size > 256:  # every dlib layer or loss name is short; a huge one means garbage
            raise self.fail("implausible string length")
        try:
            return self.take(size).decode("ascii")
        except UnicodeDecodeError as err:
            raise self.fail("non-ASCII name") from err

    def expect_version(self, expected: int, what: str) -> None:
        version = self.integer()
        if version != expected:
            raise self.fail(f"{what} has format version {version}, expected {expected}")

    def tensor(self) -> np.ndarray:
        """A tensor: version 2, four packed dims (n, k, nr, nc), then little-endian float32."""
        self.expect_version(2, "tensor")
        dims = tuple(self.integer() for _ in range(4))
        if min(dims) < 0:
            raise self.fail("negative tensor size")
        count = math.prod(dims)
        return np.frombuffer(self.take(4 * count), dtype="<f4").reshape(dims).astype(np.float32)

    def alias_tensor(self) -> tuple[int, int, int, int]:
        """A view into a params tensor: version 1 and its four dims (the offset is implied)."""
        self.expect_version(1, "alias tensor")
        return tuple(self.integer() for _ in range(4))  # type: ignore[return-value]

    def at_end(self) -> bool:
        return self.pos == len(self.data)


def _read_window(reader: _DlibReader) -> dict[str, int]:
    names = ("nr", "nc", "stride_y", "stride_x", "padding_y", "padding_x")
    return {name: reader.integer() for name in names}


def _read_con(reader: _DlibReader) -> DlibLayer:
    # con_4: params (filters then biases, flat), num_filters, the window, two alias tensors,
    # four learning-rate/weight-decay multipliers.
    params = reader.tensor().ravel()
    filters = reader.integer()
    window = _read_window(reader)
    filter_shape = reader.alias_tensor()
    reader.alias_tensor()  # biases: (1, filters, 1, 1)
    for _ in range(4):
        reader.real()
    if filter_shape[0] != filters or params.size != math.prod(filter_shape) + filters:
        raise reader.fail("convolution parameters do not match its shape")
    split = params.size - filters
    return DlibLayer(
        "con",
        {"filters": filters, **window},
        {"filters": params[:split].reshape(filter_shape), "biases": params[split:]},
    )


def _read_affine(reader: _DlibReader) -> DlibLayer:
    # affine_: params (gamma then beta), gamma and beta alias tensors, mode (0 = conv, per channel).
    params = reader.tensor().ravel()
    gamma_shape = reader.alias_tensor()
    reader.alias_tensor()
    mode = reader.integer()
    channels = math.prod(gamma_shape)
    if params.size != 2 * channels:
        raise reader.fail("affine parameters do not match its shape")
    return DlibLayer(
        "affine",
        {"mode": mode},
        {"gamma": params[:channels], "beta": params[channels:]},
    )


def _read_fc(reader: _DlibReader) -> DlibLayer:
    # fc_2: num_outputs, num_inputs, params (inputs [+1 bias row], outputs), weights and
    # biases alias tensors, bias mode (1 = no bias), four multipliers.
    outputs = reader.integer()
    inputs = reader.integer()
    params = reader.tensor()
    reader.alias_tensor()
    reader.alias_tensor()
    bias_mode = reader.integer()
    for _ in range(4):
        reader.real()
    has_bias = bias_mode == 0
    if params.size != (inputs + has_bias) * outputs:
        raise reader.fail("fully connected parameters do not match its shape")
    params = params.reshape(inputs + has_bias, outputs)
    arrays = {"weights": params[:inputs]}
    if has_bias:
        arrays["biases"] = params[inputs]
    return DlibLayer("fc", {"outputs": outputs, "inputs": inputs}, arrays)


def _read_pool(kind: str):
    return lambda reader: DlibLayer(kind, _read_window(reader))


def _read_input_rgb(reader: _DlibReader) -> DlibLayer:
    means = np.array([reader.real() for _ in range(3)], dtype=np.float32)
    rows, cols = reader.integer(), reader.integer()
    return DlibLayer("input_rgb_image_sized", {"rows": rows, "cols": cols}, {"means": means})


# Layer records this network uses, by the name (with format version) dlib writes first.
_LAYER_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "fc_2": _read_fc,
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "relu_": lambda reader: DlibLayer("relu"),
    "add_prev_": lambda reader: DlibLayer("add_prev"),
}


def _read_layer_details(reader: _DlibReader) -> DlibLayer:
    name = reader.string()
    try:
        read = _LAYER_READERS[name]
    except KeyError:
        raise reader.fail(f"unsupported layer {name!r}") from None
    return read(reader)


def _skip_layer_state(reader: _DlibReader) -> None:
    """What add_layer writes after a layer's details: three flags and three (empty) tensors
    (gradient input, cached output, params gradient or final gradient)."""
    for _ in range(3):
        reader.boolean()
    for _ in range(3):
        reader.tensor()


def read_dlib_net(path: str | Path) -> DlibNet:
    """Read a dlib DNN trained with ``loss_metric`` from its serialised file.

    dlib serialises a network from the outside in: the loss layer, then for each wrapper
    (outermost first) only its format version, down to the input layer; then the layers'
    details follow in forward order as the recursion unwinds. Versions: 2 = ``add_layer``
    (a computational layer; its details come later), 1 = ``tag``/``skip`` (nothing follows),
    3 = the first layer together with the input layer. So the version prefix, reversed, says
    where the tag/skip markers sit in forward order.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise WeightsError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise WeightsError(f"{path}: is a directory, expected a dlib .dat file") from None
    reader = _DlibReader(data, path)
    reader.expect_version(1, "loss layer wrapper")
    loss = reader.string()
    if not loss.startswith("loss_metric"):
        raise reader.fail(f"loss {loss!r} is not loss_metric")
    reader.real()  # margin
    reader.real()  # distance threshold

    wrapper_versions = []
    while (version := reader.integer()) != 3:
        if version not in (1, 2):
            raise reader.fail(f"unknown layer wrapper version {version}")
        wrapper_versions.append(version)

    input_name = reader.string()
    if input_name != "input_rgb_image_sized":
        raise reader.fail(f"unsupported input layer {input_name!r}")
    records = [_read_input_rgb(reader), _read_layer_details(reader)]
    _skip_layer_state(reader)
    reader.integer()  # the input layer's sample expansion factor

    for version in reversed(wrapper_versions):
        if version == 1:
            records.append(DlibLayer("tag_or_skip"))
            continue
        records.append(_read_layer_details(reader))
        _skip_layer_state(reader)
    if not reader.at_end():
        raise reader.fail("unexpected data after the last layer")
    return DlibNet(loss=loss, layers=records)


# --------------------------------------------------------------------------------------
# The network in Keras
# --------------------------------------------------------------------------------------

# (filters, residual blocks, first block halves the resolution), in forward order: dlib's
# alevel4 .. alevel0. alevel4 keeps the stem's 32 channels, so it has no downsampling block.
STAGES = ((32, 3, False), (64, 4, True), (128, 3, True), (256, 3, True), (256, 1, True))


def preprocess_input(chips: np.ndarray) -> np.ndarray:
    """RGB uint8 chips (N, 150, 150, 3) -> the network's float32 input.

    dlib's ``input_rgb_image_sized::to_tensor``: subtract the stored per-channel RGB means and
    divide by 256 (not 255), nothing else; channels stay in RGB order.
    """
    chips = np.asarray(chips)
    if chips.shape[-3:] != (CHIP_SIZE, CHIP_SIZE, 3):
        raise ValueError(f"dlib face chips must be {CHIP_SIZE}x{CHIP_SIZE}x3, got {chips.shape}")
    return (chips.astype(np.float32) - RGB_MEANS) / INPUT_SCALE


@keras.saving.register_keras_serializable(package="convnet_apps")
class Affine(layers.Layer):
    """dlib's ``affine`` layer: ``gamma * x + beta`` per channel.

    It is a batch normalisation frozen after training, stored already folded (no mean,
    variance or epsilon), so Keras's BatchNormalization would need four weights per channel
    where the file has two and would change the parameter count.
    """

    def build(self, input_shape):
        channels = input_shape[-1]
        self.gamma = self.add_weight(shape=(channels,), initializer="ones", name="gamma")
        self.beta = self.add_weight(shape=(channels,), initializer="zeros", name="beta")

    def call(self, inputs):
        return inputs * self.gamma + self.beta


@keras.saving.register_keras_serializable(package="convnet_apps")
class ZeroFillAdd(layers.Layer):
    """dlib's ``add_prev``: the sum of two tensors of possibly different shapes.

    The output takes the larger size on every axis; each input is placed top-left and the
    rest is zeros. In this network the shortcut of a downsampling block has fewer channels
    (zero channels are appended, where a standard ResNet would use a 1x1 projection) and,
    in the last two stages, a larger spatial size than the strided main path (3x3 vs 4x4 and
    1x1 vs 2x2: the main path gets zero rows and columns at the bottom and right). Keras's
    Add requires equal shapes, hence this layer; for equal shapes it is a plain sum.
    """

    def compute_output_shape(self, input_shapes):
        # Needs static sizes, which this network has (its input is fixed at 150x150).
        batch = input_shapes[0][0]
        sizes_per_axis = zip(*(shape[1:] for shape in input_shapes), strict=True)
        return (batch, *(max(sizes) for sizes in sizes_per_axis))

    def call(self, inputs):
        target = self.compute_output_shape([tuple(x.shape) for x in inputs])
        total = None
        for x in inputs:
            sizes = zip(target[1:], x.shape[1:], strict=True)
            missing = [[0, 0]] + [[0, want - have] for want, have in sizes]
            padded = ops.pad(x, missing) if any(after for _, after in missing) else x
            total = padded if total is None else total + padded
        return total


def _conv_affine(
    x, filters: int, kernel_size: int, strides: int, relu: bool, *, name: str, folded: bool
):
    """dlib's ``con`` -> ``affine`` [-> ``relu``].

    dlib pads a convolution by ``kernel // 2`` when its stride is 1 and not at all otherwise,
    i.e. Keras's "same" and "valid". The affine layer sits between the convolution and the
    activation, so ``conv_bn_act`` supplies the convolution alone (dlib's convolutions keep
    their bias even though an affine follows). ``folded``: no affine layer; the loader
    multiplies it into the convolution (see ``dlib_face_resnet``) and the ReLU is the
    convolution's own activation, a pattern TensorFlow runs as one fused oneDNN kernel.
    """
    x = conv_bn_act(
        x,
        filters,
        kernel_size,
        strides=strides,
        padding="same" if strides == 1 else "valid",
        activation="relu" if folded and relu else None,
        use_bn=False,
        use_bias=True,
        name=name,
    )
    if folded:
        return x
    x = Affine(name=f"{name}_affine")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x) if relu else x


def dlib_residual_block(x, filters: int, strides: int = 1, *, name: str, folded: bool = False):
    """dlib's ``ares``/``ares_down``: conv-affine-relu, conv-affine, + shortcut, relu.

    Unlike ``blocks.residual_basic_block``, the downsampling shortcut is a 2x2/2 average pool
    of the input (no 1x1 projection, hence no parameters) merged by dlib's zero-filling add,
    and normalisation is a frozen affine rather than batch normalisation.
    """
    y = _conv_affine(x, filters, 3, strides, relu=True, name=f"{name}_1", folded=folded)
    y = _conv_affine(y, filters, 3, 1, relu=False, name=f"{name}_2", folded=folded)
    shortcut = x
    if strides != 1:
        shortcut = layers.AveragePooling2D(2, strides=2, padding="valid", name=f"{name}_0_pool")(x)
    merged = ZeroFillAdd(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out")(merged)


def dlib_face_resnet(
    weights: str | Path | None = None, *, name: str = "dlib_face_resnet", folded: bool = False
):
    """The dlib face ResNet: preprocessed 150x150x3 chips -> 128-d descriptors.

    ``weights``: None (random initialisation), ``"dlib"`` (the catalogue's
    ``dlib_face_recognition_resnet_model_v1.dat``, found by the weights resolver) or a path
    to that file. Descriptors are the raw ``fc_no_bias`` output, not L2-normalised, exactly
    as dlib returns them (feed ``preprocess_input(chips)``).

    ``folded=True`` builds the inference form: each affine layer is folded into the
    convolution before it (``gamma * (W * x + b) + beta`` is a convolution with kernel
    ``gamma * W`` and bias ``gamma * b + beta``), which removes 29 elementwise layers and lets
    TensorFlow fuse convolution, bias and ReLU. The descriptors are the same up to float32
    rounding; the parameter count drops by the 7,104 affine parameters.
    """
    inputs = keras.Input(INPUT_SHAPE, name="chip")
    x = _conv_affine(inputs, 32, 7, 2, relu=True, name="stem", folded=folded)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="stem_pool")(x)
    for stage, (filters, blocks, downsample) in enumerate(STAGES, start=1):
        for block in range(1, blocks + 1):
            strides = 2 if downsample and block == 1 else 1
            block_name = f"stage{stage}_block{block}"
            x = dlib_residual_block(x, filters, strides, name=block_name, folded=folded)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = layers.Dense(DESCRIPTOR_SIZE, use_bias=False, name="descriptor")(x)
    model = keras.Model(inputs, outputs, name=name)
    if weights is not None:
        load_dlib_weights(model, _resolve_dat(weights))
    return model


def _resolve_dat(weights: str | Path) -> Path:
    if weights == "dlib":
        return resolve_file(CATALOGUE_NAME, DAT_FILENAME)
    return Path(weights)


def _weighted_layers(model, kind: type) -> list:
    return [layer for layer in model.layers if isinstance(layer, kind)]


def load_dlib_weights(model, dat_path: str | Path) -> None:
    """Copy the parameters of dlib's ``.dat`` file into a model built by ``dlib_face_resnet``.

    The file's layers are matched to the model's in forward order (the file names none of
    them); every convolution's shape, stride and padding is checked against the file, so a
    different dlib network fails with one clear message instead of loading garbage.

    No converted copy is cached: reading the 22 MB ``.dat`` and copying it in takes about
    80 ms here, while loading the same weights from a Keras ``.weights.h5`` takes about 340 ms.
    """
    dat_path = Path(dat_path)
    net = read_dlib_net(dat_path)
    by_kind: dict[str, list[DlibLayer]] = {}
    for layer in net.layers:
        by_kind.setdefault(layer.kind, []).append(layer)
    convs = _weighted_layers(model, layers.Conv2D)
    affines = _weighted_layers(model, Affine)
    denses = _weighted_layers(model, layers.Dense)

    def mismatch(what: str) -> WeightsError:
        return WeightsError(f"{dat_path}: not dlib's face ResNet ({what})")

    means = by_kind["input_rgb_image_sized"][0].arrays["means"]
    if not np.array_equal(means, RGB_MEANS):
        raise mismatch(f"input means {means.tolist()}")
    counts = [len(by_kind.get(kind, [])) for kind in ("con", "affine", "fc")]
    # A folded model has no affine layers: each of the file's is folded into its convolution.
    folded = not affines
    if counts != [len(convs), len(convs) if folded else len(affines), len(denses)]:
        raise mismatch(f"{counts[0]} convolutions, {counts[1]} affine, {counts[2]} fc layers")
    for conv, record in zip(convs, by_kind["con"], strict=True):
        attrs = record.attributes
        padding = "same" if attrs["padding_y"] else "valid"
        got = (attrs["filters"], attrs["nr"], attrs["nc"], attrs["stride_y"], padding)
        want = (conv.filters, *conv.kernel_size, conv.strides[0], conv.padding)
        if got != want or record.arrays["filters"].shape[1] != conv.kernel.shape[2]:
            raise mismatch(f"convolution {conv.name}: file has {got}, model {want}")
    for layer, record in zip(affines or convs, by_kind["affine"], strict=True):
        channels = layer.filters if folded else layer.gamma.shape[0]
        if record.arrays["gamma"].shape != (channels,):
            raise mismatch(
                f"{layer.name}: its affine has {record.arrays['gamma'].shape[0]} channels"
            )
    for index, (conv, record) in enumerate(zip(convs, by_kind["con"], strict=True)):
        # dlib stores filters (out, in, rows, cols); Keras wants (rows, cols, in, out).
        kernel, bias = record.arrays["filters"].transpose(2, 3, 1, 0), record.arrays["biases"]
        if folded:
            affine = by_kind["affine"][index].arrays
            kernel, bias = kernel * affine["gamma"], bias * affine["gamma"] + affine["beta"]
        conv.set_weights([kernel, bias])
    for affine, record in zip(affines, by_kind["affine"] if affines else [], strict=True):
        affine.set_weights([record.arrays["gamma"], record.arrays["beta"]])
    (dense,), (fc,) = denses, by_kind["fc"]
    if fc.arrays["weights"].shape != tuple(dense.kernel.shape) or "biases" in fc.arrays:
        raise mismatch(f"fc weights {fc.arrays['weights'].shape}")
    dense.set_weights([fc.arrays["weights"]])
