"""ONNX -> Keras: a convolutional ONNX graph rebuilt as a Keras functional model.

Beside the Darknet and dlib importers: ``onnx_to_keras(path)`` reads an ``.onnx`` file with
the ``onnx`` package and returns a ``keras.Model`` computing the same function, so the face
embedders of the OpenCV Zoo (SFace) and of foamliu/MobileFaceNet run, train and export as
ordinary Keras models. The operators covered are those of convolutional image networks:

- on activations: ``Conv`` (plain, grouped and depthwise), ``BatchNormalization``, ``PRelu``,
  ``Relu``, ``Clip`` (from 0: ReLU6 and the like), ``Add``, ``Sub``, ``Mul``, ``Flatten``,
  ``Gemm``, ``MatMul``, ``MaxPool``, ``AveragePool``, ``GlobalAveragePool``, ``Reshape`` (to a
  matrix), ``Dropout`` and ``Identity`` (inference: pass-through);
- on constants, evaluated once here with NumPy: ``Constant``, ``DequantizeLinear`` (per tensor,
  per axis and block-quantized, as SFace's int8 weights: they become plain float32 weights),
  ``Reshape``, ``Cast``.

Any other operator stops the import with one error naming the operator and the node.

Layout: ONNX image tensors are NCHW, Keras's are NHWC. The model takes NHWC input (the ONNX
input's C, H, W as H, W, C); weights are transposed once here, and wherever ONNX semantics
depend on the memory order (``Flatten`` and ``Reshape`` of an image tensor) the activation is
permuted to NCHW first, so the numbers equal the ONNX graph's.

A ``BatchNormalization`` that directly follows a ``Conv`` (or a ``Gemm``) whose output feeds
nothing else is folded into that layer's kernel and bias: inference computes the same
function with one layer fewer (SFace has 29 such pairs).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from shared.errors import WeightsError

ACTIVATION_OPS = (
    "Add",
    "AveragePool",
    "BatchNormalization",
    "Clip",
    "Conv",
    "Dropout",
    "Flatten",
    "Gemm",
    "GlobalAveragePool",
    "Identity",
    "MatMul",
    "MaxPool",
    "Mul",
    "PRelu",
    "Relu",
    "Reshape",
    "Sub",
)
CONSTANT_OPS = ("Cast", "Constant", "DequantizeLinear", "Reshape")


@dataclass
class _Node:
    """An ONNX node with its attributes as Python values."""

    op: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attributes: dict


def read_onnx(path: str | Path):
    """The parsed ``onnx.ModelProto`` of ``path``, or one ``WeightsError`` naming the file."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"{path}: no such ONNX file")
    try:
        return onnx.load(str(path))
    except Exception as err:  # protobuf raises its own DecodeError, onnx others
        raise WeightsError(f"{path}: not a readable ONNX model ({err})") from err


def onnx_to_keras(source, *, name: str | None = None) -> keras.Model:
    """The Keras model of an ONNX file (or an already loaded ``onnx.ModelProto``)."""
    label = str(source)
    model = read_onnx(source) if isinstance(source, str | Path) else source
    if not isinstance(source, str | Path):
        label = model.graph.name or "ONNX model"
    return _Converter(model, label).build(name or _layer_name(Path(label).stem) or "onnx_model")


def _layer_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_.-")


class _Converter:
    def __init__(self, model, label: str):
        from onnx import helper, numpy_helper

        self.label = label
        graph = model.graph
        self.constants: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in graph.initializer
        }
        self.nodes = [
            _Node(
                node.op_type,
                node.name or f"{node.op_type}_{index}",
                list(node.input),
                list(node.output),
                {a.name: helper.get_attribute_value(a) for a in node.attribute},
            )
            for index, node in enumerate(graph.node)
        ]
        for node in self.nodes:  # Constant nodes hold tensors as attributes
            if "value" in node.attributes and hasattr(node.attributes["value"], "dims"):
                node.attributes["value"] = numpy_helper.to_array(node.attributes["value"])
        # Graph inputs that carry an initializer are constants (older exporters list them),
        # and SFace's file also declares its pre-quantization weights as inputs that no
        # node reads: the image is the one input that is neither.
        read = {name for node in self.nodes for name in node.inputs}
        self.inputs = [i for i in graph.input if i.name not in self.constants and i.name in read]
        self.outputs = [o.name for o in graph.output]
        self.tensors: dict[str, keras.KerasTensor] = {}
        self.used_names: Counter = Counter()

    # --- helpers -----------------------------------------------------------------------

    def fail(self, node: _Node, what: str) -> WeightsError:
        return WeightsError(f"{self.label}: node {node.name!r} ({node.op}): {what}")

    def constant(self, node: _Node, index: int, default=None) -> np.ndarray | None:
        if index >= len(node.inputs) or not node.inputs[index]:
            return default
        name = node.inputs[index]
        if name not in self.constants:
            raise self.fail(node, f"input {name!r} must be a constant (weights) here")
        return self.constants[name]

    def activation(self, node: _Node, index: int = 0):
        name = node.inputs[index]
        if name not in self.tensors:
            raise self.fail(node, f"input {name!r} is not produced by any earlier node")
        return self.tensors[name]

    def layer_name(self, node: _Node, suffix: str = "") -> str:
        base = _layer_name(node.name + suffix) or node.op.lower()
        self.used_names[base] += 1
        count = self.used_names[base]
        return base if count == 1 else f"{base}_{count}"

    # --- the walk ----------------------------------------------------------------------

    def build(self, name: str) -> keras.Model:
        if len(self.inputs) != 1:
            raise WeightsError(f"{self.label}: {len(self.inputs)} graph inputs, one expected")
        dims = [d.dim_value for d in self.inputs[0].type.tensor_type.shape.dim]
        if len(dims) != 4 or not all(dims[1:]):
            raise WeightsError(
                f"{self.label}: input {self.inputs[0].name!r} has shape {dims}; an NCHW image "
                "input with fixed channels, height and width is expected"
            )
        _, channels, height, width = dims
        image = keras.Input((height, width, channels), name=_layer_name(self.inputs[0].name))
        self.tensors[self.inputs[0].name] = image
        folded = self._fold_batch_norms()
        for node in self.nodes:
            if node.name in folded:
                continue
            self._convert(node)
        missing = [o for o in self.outputs if o not in self.tensors]
        if missing:
            raise WeightsError(f"{self.label}: outputs {missing} are not computed from the input")
        outputs = [self.tensors[o] for o in self.outputs]
        return keras.Model(image, outputs[0] if len(outputs) == 1 else outputs, name=name)

    def _convert(self, node: _Node) -> None:
        inputs_constant = all(not i or i in self.constants for i in node.inputs)
        if node.op in CONSTANT_OPS and inputs_constant:
            value = getattr(self, f"_const_{node.op}")(node)
            self.constants[node.outputs[0]] = np.asarray(value)
            return
        if node.op not in ACTIVATION_OPS:
            raise self.fail(
                node,
                "operator not supported by the ONNX importer (supported: "
                + ", ".join(sorted(set(ACTIVATION_OPS + CONSTANT_OPS)))
                + ")",
            )
        output = getattr(self, f"_op_{node.op}")(node)
        self.tensors[node.outputs[0]] = output

    # --- constants ---------------------------------------------------------------------

    def _const_Constant(self, node: _Node):
        if "value" not in node.attributes:
            raise self.fail(node, f"only 'value' constants are supported, got {node.attributes}")
        return node.attributes["value"]

    def _const_Cast(self, node: _Node):
        from onnx import helper

        dtype = helper.tensor_dtype_to_np_dtype(node.attributes["to"])
        return self.constant(node, 0).astype(dtype)

    def _const_Reshape(self, node: _Node):
        data, shape = self.constant(node, 0), self.constant(node, 1)
        target = [d if d != 0 else data.shape[i] for i, d in enumerate(shape.tolist())]
        return data.reshape(target)

    def _const_DequantizeLinear(self, node: _Node):
        """``(x - zero_point) * scale``, the scale broadcast per tensor, per axis or per block.

        With ``block_size`` B the scale (and zero point) hold one value per B consecutive
        elements along ``axis`` (ONNX opset 21); they are repeated B times along that axis.
        """
        quantized = self.constant(node, 0)
        scale = self.constant(node, 1).astype(np.float32)
        zero = self.constant(node, 2, np.zeros((), quantized.dtype))
        axis = node.attributes.get("axis", 1) % max(quantized.ndim, 1)
        block = node.attributes.get("block_size", 0)

        def spread(values: np.ndarray) -> np.ndarray:
            if values.ndim == 0 or values.size == 1:
                return values.reshape(())
            if block:
                repeated = np.repeat(values, block, axis=axis)
                return np.take(repeated, np.arange(quantized.shape[axis]), axis=axis)
            shape = [1] * quantized.ndim
            shape[axis] = -1
            return values.reshape(shape)

        centred = quantized.astype(np.int32) - spread(zero).astype(np.int32)
        return (centred.astype(np.float32) * spread(scale)).astype(np.float32)

    # --- batch norm folding ------------------------------------------------------------

    def _fold_batch_norms(self) -> set[str]:
        """Fold each BatchNormalization into the Conv/Gemm before it; return the folded BNs.

        Folding needs the producer's weights to be constants already, so constant nodes
        (DequantizeLinear, Reshape of weights) are evaluated first, in graph order.
        """
        consumers = Counter(i for node in self.nodes for i in node.inputs)
        producer = {node.outputs[0]: node for node in self.nodes if node.outputs}
        for node in self.nodes:
            if node.op in CONSTANT_OPS and all(not i or i in self.constants for i in node.inputs):
                self._convert(node)
        evaluated = {n.name for n in self.nodes if n.outputs and n.outputs[0] in self.constants}
        folded = set(evaluated)
        for node in self.nodes:
            if node.op != "BatchNormalization" or node.inputs[0] in self.constants:
                continue
            before = producer.get(node.inputs[0])
            if (
                before is None
                or before.op not in ("Conv", "Gemm")
                or consumers[node.inputs[0]] != 1
                or node.inputs[0] in self.outputs
            ):
                continue
            if before.op == "Gemm" and before.attributes.get("transA", 0):
                continue
            scale, bias = self._bn_affine(node)
            weight = self.constant(before, 1)
            old_bias = self.constant(before, 2, np.zeros(len(scale), np.float32))
            if before.op == "Conv":
                weight = weight * scale.reshape(-1, 1, 1, 1)
            else:
                alpha = before.attributes.get("alpha", 1.0)
                beta = before.attributes.get("beta", 1.0)
                transposed = before.attributes.get("transB", 0)
                weight = alpha * (weight if transposed else weight.T) * scale[:, None]
                old_bias = beta * old_bias
                before.attributes.update(alpha=1.0, beta=1.0, transB=1)
            new_bias = old_bias * scale + bias
            weight_name, bias_name = f"{before.name}/folded_weight", f"{before.name}/folded_bias"
            self.constants[weight_name] = weight.astype(np.float32)
            self.constants[bias_name] = new_bias.astype(np.float32)
            before.inputs = [before.inputs[0], weight_name, bias_name]
            before.outputs = list(node.outputs)
            folded.add(node.name)
        return folded

    def _bn_affine(self, node: _Node) -> tuple[np.ndarray, np.ndarray]:
        gamma, beta, mean, var = (self.constant(node, i).astype(np.float64) for i in (1, 2, 3, 4))
        scale = gamma / np.sqrt(var + node.attributes.get("epsilon", 1e-5))
        return scale.astype(np.float32), (beta - mean * scale).astype(np.float32)

    # --- operators on activations ------------------------------------------------------

    def _pad(self, node: _Node, x, pads: list[int]):
        """Explicit zero padding (ONNX pads: begin H, begin W, end H, end W)."""
        if not any(pads):
            return x
        if len(pads) != 4:
            raise self.fail(node, f"pads {pads} (only 2-D images are supported)")
        top, left, bottom, right = pads
        return layers.ZeroPadding2D(
            ((top, bottom), (left, right)), name=self.layer_name(node, "_pad")
        )(x)

    def _spatial(self, node: _Node, kernel_rank: int = 2) -> tuple[list[int], list[int]]:
        if node.attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
            raise self.fail(node, "auto_pad is not supported; export with explicit pads")
        strides = list(node.attributes.get("strides", [1] * kernel_rank))
        pads = list(node.attributes.get("pads", [0] * (2 * kernel_rank)))
        return strides, pads

    def _op_Conv(self, node: _Node):
        x = self.activation(node)
        weight = self.constant(node, 1)
        bias = self.constant(node, 2)
        if weight.ndim != 4:
            raise self.fail(node, f"weights of rank {weight.ndim} (only 2-D convolutions)")
        strides, pads = self._spatial(node)
        dilations = tuple(node.attributes.get("dilations", [1, 1]))
        groups = node.attributes.get("group", 1)
        filters, per_group, kh, kw = weight.shape
        channels = per_group * groups
        x = self._pad(node, x, pads)
        common = dict(
            strides=tuple(strides),
            padding="valid",
            dilation_rate=dilations,
            use_bias=bias is not None,
            name=self.layer_name(node),
        )
        if groups > 1 and groups == channels:
            # Depthwise: ONNX output channel c * multiplier + m reads input channel c.
            multiplier = filters // channels
            layer = layers.DepthwiseConv2D((kh, kw), depth_multiplier=multiplier, **common)
            kernel = weight.reshape(channels, multiplier, kh, kw).transpose(2, 3, 0, 1)
        else:
            layer = layers.Conv2D(filters, (kh, kw), groups=groups, **common)
            kernel = weight.transpose(2, 3, 1, 0)
        y = layer(x)
        layer.set_weights([kernel] + ([bias] if bias is not None else []))
        return y

    def _op_BatchNormalization(self, node: _Node):
        x = self.activation(node)
        layer = layers.BatchNormalization(
            epsilon=float(node.attributes.get("epsilon", 1e-5)), name=self.layer_name(node)
        )
        y = layer(x)
        gamma, beta, mean, var = (self.constant(node, i) for i in (1, 2, 3, 4))
        layer.set_weights([gamma, beta, mean, var])
        return y

    def _op_PRelu(self, node: _Node):
        x = self.activation(node)
        slope = self.constant(node, 1).astype(np.float32)
        channels = x.shape[-1]
        if slope.size not in (1, channels):
            raise self.fail(node, f"slope of shape {slope.shape} for {channels} channels")
        shared = list(range(1, len(x.shape) - 1))
        layer = layers.PReLU(shared_axes=shared or None, name=self.layer_name(node))
        y = layer(x)
        alpha = np.broadcast_to(slope.reshape(-1), (channels,))
        layer.set_weights([alpha.reshape([1] * len(shared) + [channels]).copy()])
        return y

    def _op_Relu(self, node: _Node):
        return layers.ReLU(name=self.layer_name(node))(self.activation(node))

    def _op_Clip(self, node: _Node):
        low = node.attributes.get("min", self.constant(node, 1))
        high = node.attributes.get("max", self.constant(node, 2))
        low = None if low is None else float(np.asarray(low))
        if low != 0.0:
            raise self.fail(node, f"Clip from {low} (only Clip from 0, e.g. ReLU6, is supported)")
        high = None if high is None else float(np.asarray(high))
        return layers.ReLU(max_value=high, name=self.layer_name(node))(self.activation(node))

    def _op_Dropout(self, node: _Node):
        return self.activation(node)  # inference: identity

    _op_Identity = _op_Dropout

    def _binary(self, node: _Node, merge, scale_offset):
        """Add/Sub/Mul of two activations, or of an activation and a constant."""
        first, second = node.inputs[:2]
        if first in self.tensors and second in self.tensors:
            return merge(name=self.layer_name(node))([self.tensors[first], self.tensors[second]])
        if first in self.tensors:
            x, value, constant_first = self.tensors[first], self.constants.get(second), False
        else:
            x, value, constant_first = self.activation(node, 1), self.constants.get(first), True
        if value is None:
            raise self.fail(node, "an input is neither an activation nor a constant")
        value = np.asarray(value, np.float32)
        if value.size == 1:
            value = value.reshape(())
        elif len(x.shape) == 4 and value.size == x.shape[-1]:
            value = value.reshape(-1)  # per channel: ONNX (C, 1, 1) or (1, C, 1, 1)
        else:
            raise self.fail(node, f"constant of shape {value.shape} (scalar or per channel only)")
        scale, offset = scale_offset(value, constant_first)
        return layers.Rescaling(scale, offset, name=self.layer_name(node))(x)

    def _op_Add(self, node: _Node):
        return self._binary(node, layers.Add, lambda v, _: (1.0, v))

    def _op_Mul(self, node: _Node):
        return self._binary(node, layers.Multiply, lambda v, _: (v, 0.0))

    def _op_Sub(self, node: _Node):
        # x - c, or c - x when the constant comes first
        return self._binary(
            node,
            layers.Subtract,
            lambda v, constant_first: (-1.0, v) if constant_first else (1.0, -v),
        )

    def _to_matrix(self, node: _Node, x):
        """An (N, C, H, W)-ordered flattening of an NHWC activation, as ONNX flattens."""
        if len(x.shape) == 2:
            return x
        if len(x.shape) != 4:
            raise self.fail(node, f"cannot flatten an activation of rank {len(x.shape)}")
        channels_first = layers.Permute((3, 1, 2), name=self.layer_name(node, "_nchw"))(x)
        return layers.Flatten(name=self.layer_name(node))(channels_first)

    def _op_Flatten(self, node: _Node):
        if node.attributes.get("axis", 1) != 1:
            raise self.fail(node, "only Flatten at axis 1 (keep the batch) is supported")
        return self._to_matrix(node, self.activation(node))

    def _op_Reshape(self, node: _Node):
        x = self.activation(node)
        shape = self.constant(node, 1).tolist()
        if len(shape) != 2 or shape[0] not in (0, 1, -1):
            raise self.fail(node, f"Reshape to {shape} (only to a (batch, -1) matrix)")
        flat = self._to_matrix(node, x)
        if shape[1] not in (-1, flat.shape[-1]):
            raise self.fail(node, f"Reshape to {shape} from {flat.shape[-1]} values per image")
        return flat

    def _dense(self, node: _Node, x, kernel: np.ndarray, bias: np.ndarray | None):
        if len(x.shape) != 2:
            raise self.fail(node, f"matrix product on an activation of rank {len(x.shape)}")
        if kernel.shape[0] != x.shape[-1]:
            raise self.fail(node, f"weights {kernel.shape} for {x.shape[-1]} inputs")
        layer = layers.Dense(kernel.shape[1], use_bias=bias is not None, name=self.layer_name(node))
        y = layer(x)
        layer.set_weights([kernel.astype(np.float32)] + ([bias] if bias is not None else []))
        return y

    def _op_Gemm(self, node: _Node):
        if node.attributes.get("transA", 0):
            raise self.fail(node, "transA=1 (a transposed activation) is not supported")
        weight = self.constant(node, 1)
        kernel = node.attributes.get("alpha", 1.0) * (
            weight.T if node.attributes.get("transB", 0) else weight
        )
        bias = self.constant(node, 2)
        if bias is not None:
            bias = np.broadcast_to(node.attributes.get("beta", 1.0) * bias, (kernel.shape[1],))
            bias = bias.astype(np.float32)
        return self._dense(node, self.activation(node), kernel, bias)

    def _op_MatMul(self, node: _Node):
        return self._dense(node, self.activation(node), self.constant(node, 1), None)

    def _pool(self, node: _Node, kind):
        x = self.activation(node)
        strides, pads = self._spatial(node)
        kernel = tuple(node.attributes["kernel_shape"])
        if node.attributes.get("ceil_mode", 0) or any(
            d != 1 for d in node.attributes.get("dilations", [1])
        ):
            raise self.fail(node, "ceil_mode and dilations are not supported")
        if any(pads):
            if kind is layers.AveragePooling2D and not node.attributes.get("count_include_pad", 0):
                raise self.fail(node, "padded AveragePool without count_include_pad")
            if kind is layers.MaxPooling2D:
                raise self.fail(node, "padded MaxPool is not supported")
            x = self._pad(node, x, pads)
        return kind(kernel, tuple(strides), padding="valid", name=self.layer_name(node))(x)

    def _op_MaxPool(self, node: _Node):
        return self._pool(node, layers.MaxPooling2D)

    def _op_AveragePool(self, node: _Node):
        return self._pool(node, layers.AveragePooling2D)

    def _op_GlobalAveragePool(self, node: _Node):
        return layers.GlobalAveragePooling2D(keepdims=True, name=self.layer_name(node))(
            self.activation(node)
        )
