"""int8 inference on OpenVINO from a small preset of activation ranges, without data at run time.

Post-training quantisation needs calibration images to learn how large each layer's values get;
a user's machine has none. A *quantisation preset* carries what calibration learnt, and nothing
of the weights: where NNCF put a quantiser on a value flowing through the graph (the inputs of
the ops that read it, each named by its type, its place among the graph's ops of that type and
the input's index) and the value's range (one pair, or one per channel). The weights
of every convolution or matrix product whose input is quantised get their per-output-channel
int8 range from the weights themselves, as NNCF does: a preset is tens of kilobytes of JSON.

- ``quantize_with_nncf`` + ``make_preset``: where the calibration images are (a developer's
  machine; for the face embedders ``python -m apps.face_access.int8``).
- ``apply_preset``: on any machine, on the float model converted from the same weights file
  (the preset names it by sha256, and refuses a graph whose ops are not where it expects them).
  OpenVINO's CPU plugin then runs those ops in int8.

A value's quantiser is 256 levels over its ``[low, high]``; weights get 255 levels over
``[-max|w|, max|w|]`` per output channel (NNCF's symmetric 8 bits), except the first quantised
op's (below).
"""

from __future__ import annotations

import json

import numpy as np

from shared.errors import UserError, WeightsError

PRESET_FORMAT = 1
WEIGHTED_OPS = ("Convolution", "GroupConvolution", "MatMul")
# Ops a quantised value may pass through on its way to a weighted op (NNCF places the
# quantiser before a transpose or flatten rather than after it).
_PASS_THROUGH = ("Reshape", "Transpose")
ACTIVATION_LEVELS, WEIGHT_LEVELS = 256, 255
# The first quantised op's weights get 7 bits (NNCF's "overflow fix"): without VNNI, x86
# multiplies u8 by s8 in pairs summed in 16 bits, which the image's full-range values overflow.
FIRST_WEIGHT_STEPS = (-64, 63)
NNCF_PRESETS = ("mixed", "performance")  # activations over their own range, or symmetric


def _data_ops(model) -> list:
    """The ops whose values depend on the input, in graph order, without quantisers: the same
    list for a float model and for NNCF's int8 version of it (whose weight decompression ops
    depend on constants only)."""
    live, ops = set(), []
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind == "Parameter" or any(
            value.get_node().get_instance_id() in live for value in op.input_values()
        ):
            live.add(op.get_instance_id())
            if kind != "FakeQuantize":
                ops.append(op)
    return ops


def op_places(model) -> tuple[dict, dict]:
    """({op's instance id: (its type, its place among the ops of its type)}, the inverse):
    how a preset names ops, over ``_data_ops``."""
    where, op_at, counts = {}, {}, {}
    for op in _data_ops(model):
        kind = op.get_type_name()
        place = (kind, counts.get(kind, 0))
        counts[kind] = place[1] + 1
        where[op.get_instance_id()] = place
        op_at[place] = op
    return where, op_at


def weighted_ops(model) -> list:
    """The convolutions and matrix products of a model's data flow, in graph order."""
    return [op for op in _data_ops(model) if op.get_type_name() in WEIGHTED_OPS]


def make_preset(quantized, source_sha256: str, calibration: str) -> dict:
    """The activation quantisers of an NNCF-quantised model, as a preset (module docstring)."""
    where, _ = op_places(quantized)
    quantisers = []
    for op in quantized.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        if op.input_value(0).get_node().get_instance_id() not in where:
            continue  # a weight's quantiser: apply_preset makes it from the weights
        readers = sorted(
            [*where[target.get_node().get_instance_id()], target.get_index()]
            for target in op.output(0).get_target_inputs()
        )
        low, high = (op.input_value(i).get_node().get_data().ravel() for i in (1, 2))
        quantisers.append({"readers": readers, "low": _numbers(low), "high": _numbers(high)})
    return {
        "format": PRESET_FORMAT,
        "source_sha256": source_sha256,
        "calibration": calibration,
        "quantisers": quantisers,
    }


def _numbers(values: np.ndarray) -> list[float]:
    return [float(f"{value:.6g}") for value in values]


def quantize_with_nncf(model, samples, preset: str = "mixed") -> object:
    """``model`` (OpenVINO, float) quantised by NNCF on ``samples`` (inputs of batch 1), with
    the settings ``apply_preset`` reproduces: symmetric weights, activations over the range they
    reach (NNCF's "mixed" ``preset``) or symmetric ("performance"), no bias correction (a
    preset carries ranges only). NNCF is a developer's tool here, not a dependency."""
    try:
        import nncf
    except ImportError:
        raise UserError("making a quantisation preset needs NNCF: pip install nncf") from None
    samples = list(samples)
    return nncf.quantize(
        model,
        nncf.Dataset(samples),
        preset=nncf.QuantizationPreset(preset),
        subset_size=len(samples),
        advanced_parameters=nncf.AdvancedQuantizationParameters(disable_bias_correction=True),
    )


def read_preset(text: str, source_sha256: str, origin: str) -> dict:
    """A preset (JSON ``text`` read from ``origin``), checked to be for the weights whose
    sha256 is given."""
    try:
        preset = json.loads(text)
    except ValueError as err:
        raise WeightsError(f"{origin}: not a readable quantisation preset ({err})") from None
    if preset.get("format") != PRESET_FORMAT:
        raise WeightsError(f"{origin}: quantisation preset format {preset.get('format')!r}")
    if preset.get("source_sha256") != source_sha256:
        raise WeightsError(f"{origin}: a quantisation preset for other weights")
    return preset


def _fake_quantize(opset, value, low: np.ndarray, high: np.ndarray, levels: int):
    low = opset.constant(np.asarray(low, np.float32))
    high = opset.constant(np.asarray(high, np.float32))
    return opset.fake_quantize(value, low, high, low, high, levels)


def _weighted_readers(op) -> list:
    """The weighted ops that read ``op``'s output as data, directly or through pass-through ops."""
    found, frontier = [], [op]
    while frontier:
        node = frontier.pop()
        for target in node.output(0).get_target_inputs():
            reader = target.get_node()
            if reader.get_type_name() in WEIGHTED_OPS and target.get_index() == 0:
                found.append(reader)
            elif reader.get_type_name() in _PASS_THROUGH:
                frontier.append(reader)
    return found


def _weight_range(weights: np.ndarray, op) -> np.ndarray:
    """max|w| per output channel, shaped to broadcast over the weights.

    As NNCF does, a channel's range is at least 1 % of the op's largest (and 8e-5): an almost
    dead filter would otherwise get a scale thousands of times smaller than its neighbours'.
    """
    if op.get_type_name() == "MatMul" and not op.get_attributes().get("transpose_b"):
        high = np.abs(weights).max(axis=0, keepdims=True)  # [inputs, outputs]
    else:
        # Convolution and MatMul (transposed) weights lead with the output channel; a group
        # convolution's with (groups, outputs per group), both output channels.
        lead = 2 if op.get_type_name() == "GroupConvolution" else 1
        high = np.abs(weights).reshape(*weights.shape[:lead], -1).max(axis=-1)
        high = high.reshape(*weights.shape[:lead], *([1] * (weights.ndim - lead)))
    return np.maximum(high, max(high.max() * 0.01, 8e-5))


def _quantise_weights(opset, op, first: bool) -> None:
    weights = op.input_value(1).get_node()
    if weights.get_type_name() != "Constant":
        return  # weights computed in the graph: left in float
    scale = _weight_range(weights.get_data(), op)
    if first:
        step = 2 * scale / 127  # NNCF's grid for 7 bits
        low, high, levels = FIRST_WEIGHT_STEPS[0] * step, FIRST_WEIGHT_STEPS[1] * step, 128
    else:
        low, high, levels = -scale, scale, WEIGHT_LEVELS
    op.input(1).replace_source_output(
        _fake_quantize(opset, weights.output(0), low, high, levels).output(0)
    )


def apply_preset(model, preset: dict):
    """Insert the preset's int8 quantisers into an OpenVINO float model, in place; returns it."""
    from openvino import opset13 as opset

    _, op_at = op_places(model)
    quantised = []
    for quantiser in preset["quantisers"]:
        try:
            readers = [(op_at[(kind, place)], index) for kind, place, index in quantiser["readers"]]
        except KeyError:
            raise WeightsError("the quantisation preset does not fit this model") from None
        value = readers[0][0].input_value(readers[0][1])
        low, high = (np.asarray(quantiser[end], np.float32) for end in ("low", "high"))
        if high.size > 1:  # one range per channel (NCHW)
            shape = (1, -1, *([1] * (len(value.get_partial_shape()) - 2)))
            low, high = low.reshape(shape), high.reshape(shape)
        fake = _fake_quantize(opset, value, low, high, ACTIVATION_LEVELS)
        for reader, index in readers:
            reader.input(index).replace_source_output(fake.output(0))
        quantised.extend(_weighted_readers(fake))
    order = {op.get_instance_id(): n for n, op in enumerate(model.get_ordered_ops())}
    quantised.sort(key=lambda op: order[op.get_instance_id()])
    for number, op in enumerate(quantised):
        _quantise_weights(opset, op, first=number == 0)
    model.validate_nodes_and_infer_types()
    return model
