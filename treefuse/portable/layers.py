"""Every layer of an ONNX model exposed, named by the folded model's module paths (`blocks.2.pairs.0.conv_a`).

`torch.onnx.export` names each node `/blocks.2/pairs.0/conv_a/Conv`: its module path, then its op.
Every exporter of treefuse keeps those names (INT8 rewrites add `_QuantizeLinear`-style suffixes), so
a layer means the same tensor in PyTorch, ONNX Runtime and OpenVINO. Standard library only here:
`onnx` is imported when a model is exposed (a bundle's `run.py --layers`, `treefuse diff`).
"""
from __future__ import annotations

from typing import Any

OUTPUT = "output"  # the model's own output, the last layer of every capture


def scope_of(node_name: str) -> str:
    """'/blocks.2/pairs.0/conv_a/Conv' -> 'blocks.2.pairs.0.conv_a'; '' for a node outside any module.

    The module path is the leading run of lower-case segments: op names (`Conv`, `Relu_output_0_QuantizeLinear`,
    OpenVINO's `Conv/WithoutBiases`) start with a capital."""
    if not node_name.startswith("/"):
        return ""
    path = []
    for segment in node_name.split("/")[1:-1]:
        if not segment[:1].islower():
            break
        path.append(segment)
    return ".".join(path)


def _inside(scope: str, outer: str) -> bool:
    return scope == outer or scope.startswith(outer + ".")


def layer_tensors(graph: Any) -> dict[str, str]:
    """layer name -> the ONNX tensor holding its output, in execution order (an onnx.GraphProto).

    A layer's output is the tensor its scope hands to a node outside it; when that tensor's only
    reader is a Relu or a quantize-dequantize pair, the layer's output is what comes out of them
    (quantized exports fuse the activation into the layer, so only that value exists in every format). A tensor two scopes share
    keeps the outer name (a fuse's conv and the fuse end in one Relu).
    """
    readers: dict[str, list[Any]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    graph_outputs = {output.name for output in graph.output}
    made_at = {tensor: index for index, node in enumerate(graph.node) for tensor in node.output}
    tensor_of: dict[str, str] = {}
    for node in graph.node:
        scope = scope_of(node.name)
        if not scope:
            continue
        for tensor in node.output:
            outside = [r for r in readers.get(tensor, []) if not _inside(scope_of(r.name), scope)]
            if tensor in graph_outputs or outside:
                tensor_of[scope] = _settled(tensor, readers)
    layers = {layer: tensor for layer, tensor in _outermost(tensor_of).items() if tensor not in graph_outputs}
    ordered = dict(sorted(layers.items(), key=lambda item: made_at[item[1]]))
    return {**ordered, OUTPUT: graph.output[0].name}


def _settled(tensor: str, readers: dict[str, list[Any]]) -> str:
    """Follow a lone Relu, and a lone QuantizeLinear -> DequantizeLinear pair: the value the next layer reads.

    (ONNX Runtime's INT8 export drops the Relu after a conv: the uint8 quantizer's zero point clips it.)"""
    while True:
        following = readers.get(tensor, [])
        if len(following) != 1:
            return tensor
        node = following[0]
        after = readers.get(node.output[0], [])
        if node.op_type == "Relu":
            tensor = node.output[0]
        elif node.op_type == "QuantizeLinear" and len(after) == 1 and after[0].op_type == "DequantizeLinear":
            tensor = after[0].output[0]
        else:
            return tensor


def _outermost(tensor_of: dict[str, str]) -> dict[str, str]:
    """Drop a layer whose tensor an enclosing layer also names; order by where the tensor is made."""
    by_tensor: dict[str, str] = {}
    for layer, tensor in tensor_of.items():
        if tensor not in by_tensor or len(layer) < len(by_tensor[tensor]):
            by_tensor[tensor] = layer
    return {layer: tensor for tensor, layer in by_tensor.items()}


def exposed_onnx(path: Any) -> tuple[bytes, dict[str, str]]:
    """The ONNX model's bytes with every layer's tensor a graph output, and layer -> tensor."""
    import onnx

    model = onnx.load(str(path))
    layers = layer_tensors(model.graph)
    present = {output.name for output in model.graph.output}
    for tensor in layers.values():
        if tensor not in present:  # a float tensor of unknown shape: ONNX Runtime fills the shape in at run time
            model.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    return model.SerializeToString(), layers
