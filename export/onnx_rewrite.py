"""Exact FP32 graph rewrites that make the INT8 graph faster on ONNX Runtime's CPU kernels.

Conv1x1(Concat(a, b)) = Conv1x1(a; W[:, :Ca]) + Conv1x1(b; W[:, Ca:]) + bias. Quantized, the
left side costs a QLinearConcat that requantizes and interleaves channels in NHWC (about
6 ms per fuse at 512x512 on the measured machine); the right side two small QLinearConvs
and a QLinearAdd, which together measured faster (docs/quantization.md).
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


def split_concat_convs(model: Any) -> tuple[Any, int]:
    """Rewrite every Concat(axis=1) feeding only a plain 1x1 Conv into per-input convs and Adds."""
    from onnx import helper, numpy_helper

    graph = model.graph
    weights = {i.name: i for i in graph.initializer}
    producers = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, int] = {}
    for name in [i for node in graph.node for i in node.input] + [o.name for o in graph.output]:
        consumers[name] = consumers.get(name, 0) + 1
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
