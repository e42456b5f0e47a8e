"""Exact FP32 graph rewrites that make the INT8 graph faster on ONNX Runtime's CPU kernels.

Conv1x1(Concat(a, b)) = Conv1x1(a; W[:, :Ca]) + Conv1x1(b; W[:, Ca:]) + bias. Quantized, the
left side costs a QLinearConcat that requantizes and interleaves channels in NHWC (about
6 ms per fuse at 512x512 on the measured machine); the right side two small QLinearConvs
and a QLinearAdd, which together measured faster (docs/quantization.md).

Conv(x; W) = Conv(Pad(x, zero channels); W padded with zero input channels). ONNX Runtime's
symmetric-conv (VNNI) kernels need a multiple of 4 input channels; the 3-channel image input
otherwise sends the head conv down the slower im2col + QGEMM path. They also need at least
16 output channels, so a narrower conv (the 3-channel tail) computes 16 channels, 13 of them
zero weights and bias, and a Slice keeps the real ones: Slice(Conv(x; [W; 0]), :Co) = Conv(x; W).
"""
from __future__ import annotations

from typing import Any

import numpy as np


def _attributes(node: Any) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _is_plain_1x1(node: Any) -> bool:
    attrs = _attributes(node)
    return (node.op_type == "Conv" and list(attrs.get("kernel_shape", [])) == [1, 1] and attrs.get("group", 1) == 1
            and set(attrs.get("strides", [1, 1])) == {1} and not any(attrs.get("pads", [0])))


def _channel_counts(model: Any) -> dict[str, int]:
    """Channel dimension of every tensor whose shape inference knows it."""
    from onnx import shape_inference

    inferred = shape_inference.infer_shapes(model)
    counts = {}
    for info in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output):
        dims = info.type.tensor_type.shape.dim
        if len(dims) == 4 and dims[1].HasField("dim_value"):
            counts[info.name] = dims[1].dim_value
    return counts


def _use_counts(graph: Any) -> dict[str, int]:
    """How many node inputs and graph outputs read each tensor name."""
    counts: dict[str, int] = {}
    for name in [i for node in graph.node for i in node.input] + [o.name for o in graph.output]:
        counts[name] = counts.get(name, 0) + 1
    return counts


def pad_input_channels(model: Any, multiple: int = 4) -> tuple[Any, int]:
    """Zero-pad each graph input read by a Conv to a multiple of `multiple` channels; returns the conv count."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    inputs = {i.name for i in graph.input}
    channels = {name: count for name, count in _channel_counts(model).items() if name in inputs}
    uses = _use_counts(graph)
    pads, count = {}, 0
    for conv in graph.node:
        source = conv.input[0]
        if (conv.op_type != "Conv" or source not in channels or channels[source] % multiple == 0
                or conv.input[1] not in weights or uses[conv.input[1]] != 1 or _attributes(conv).get("group", 1) != 1):
            continue
        extra = -channels[source] % multiple
        weight = numpy_helper.to_array(weights[conv.input[1]])
        zeros = np.zeros((weight.shape[0], extra, *weight.shape[2:]), dtype=weight.dtype)
        weights[conv.input[1]].CopyFrom(numpy_helper.from_array(np.concatenate([weight, zeros], axis=1), conv.input[1]))
        if source not in pads:
            graph.initializer.append(numpy_helper.from_array(np.array([0, 0, 0, 0, 0, extra, 0, 0], np.int64),
                                                             f"{source}_channel_pads"))
            pads[source] = helper.make_node("Pad", [source, f"{source}_channel_pads"], [f"{source}_channel_padded"],
                                            name=f"{source}_channel_pad")
        conv.input[0] = pads[source].output[0]
        count += 1
    nodes = [*pads.values(), *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    return model, count


def pad_output_channels(model: Any, minimum: int = 16) -> tuple[Any, int]:
    """Widen each Conv with fewer than `minimum` output channels by zero filters, then slice them off."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    uses = _use_counts(graph)
    nodes, count = [], 0
    for conv in list(graph.node):
        nodes.append(conv)
        params = conv.input[1:3]
        if (conv.op_type != "Conv" or _attributes(conv).get("group", 1) != 1
                or not all(name in weights and uses[name] == 1 for name in params)):
            continue
        arrays = [numpy_helper.to_array(weights[name]) for name in params]
        channels = arrays[0].shape[0]
        if channels >= minimum:
            continue
        for name, array in zip(params, arrays):
            widened = np.zeros((minimum, *array.shape[1:]), dtype=array.dtype)
            widened[:channels] = array
            weights[name].CopyFrom(numpy_helper.from_array(widened, name))
        sliced, conv.output[0] = conv.output[0], f"{conv.output[0]}_widened"
        bounds = [f"{conv.name}_slice_{part}" for part in ("starts", "ends", "axes")]
        graph.initializer.extend(numpy_helper.from_array(np.array([value], np.int64), name)
                                 for name, value in zip(bounds, (0, channels, 1)))
        nodes.append(helper.make_node("Slice", [conv.output[0], *bounds], [sliced], name=f"{conv.name}_slice"))
        count += 1
    del graph.node[:]
    graph.node.extend(nodes)
    return model, count


def split_concat_convs(model: Any) -> tuple[Any, int]:
    """Rewrite every Concat(axis=1) feeding only a plain 1x1 Conv into per-input convs and Adds."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    producers = {out: n for n in graph.node for out in n.output}
    consumers = _use_counts(graph)
    channels = _channel_counts(model)
    replaced, dropped, nodes = {}, set(), []
    for conv in graph.node:
        concat = producers.get(conv.input[0]) if conv.op_type == "Conv" else None
        if (concat is None or concat.op_type != "Concat" or len(concat.input) < 2 or _attributes(concat).get("axis") != 1
                or consumers[concat.output[0]] != 1 or not _is_plain_1x1(conv) or conv.input[1] not in weights
                or not all(name in channels for name in concat.input)):
            continue
        weight = numpy_helper.to_array(weights[conv.input[1]])
        bounds = np.cumsum([0] + [channels[name] for name in concat.input])
        if bounds[-1] != weight.shape[1]:
            continue
        parts, outputs = [], []
        for index, source in enumerate(concat.input):
            name = f"{conv.name}_part{index}"
            graph.initializer.append(numpy_helper.from_array(
                np.ascontiguousarray(weight[:, bounds[index]:bounds[index + 1]]), f"{name}.weight"))
            bias = [conv.input[2]] if index == 0 and len(conv.input) > 2 else []
            outputs.append(f"{name}_output")
            parts.append(helper.make_node("Conv", [source, f"{name}.weight", *bias], [outputs[-1]], name=name,
                                          kernel_shape=[1, 1]))
        total = outputs[0]
        for index, output in enumerate(outputs[1:], start=1):
            target = conv.output[0] if index == len(outputs) - 1 else f"{conv.name}_sum{index}"
            parts.append(helper.make_node("Add", [total, output], [target], name=f"{conv.name}_sum{index}"))
            total = target
        replaced[id(conv)] = parts
        dropped.add(id(concat))
    for node in graph.node:
        if id(node) not in dropped:
            nodes.extend(replaced.get(id(node), [node]))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    return model, len(replaced)
