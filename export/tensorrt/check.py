"""Refuse, before any build, an ONNX model that TensorRT's ONNX parser would reject.

The rules come from ONNX-TensorRT's operator table (docs/operators.md: QuantizeLinear
"`y_zero_point` must be 0", DequantizeLinear INT8 (FP8/INT4) inputs with "`x_zero_point` must be
zero", scales and zero points build-time constants; TensorRT 10.15 parses opsets 9 to 24) and
NVIDIA's explicit-quantization guide (per-channel Q/DQ needs the `axis` attribute of opset 13;
weights are quantized per output channel). The check reads the graph only; it runs no TensorRT.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.export.tensorrt.profile import ShapeProfile, format_shape

TENSORRT_OPSETS = (9, 24)  # ONNX-TensorRT docs/operators.md for TensorRT 10.15; older 10.x parse fewer
PER_CHANNEL_MIN_OPSET = 13  # the Q/DQ `axis` attribute arrived in opset 13
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
REEXPORT = "re-export with `treefuse export onnx --precision int8 --target tensorrt`"


@dataclass(frozen=True)
class TrtCheck:
    """What the check found: the model's facts and every problem, first one first."""

    path: Path
    opset: int
    qdq_nodes: int
    per_channel_dequantizers: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "target": "tensorrt", "ok": self.ok, "opset": self.opset,
                "qdq_nodes": self.qdq_nodes, "per_channel_dequantizers": self.per_channel_dequantizers,
                "problems": self.problems, "opsets_accepted": list(TENSORRT_OPSETS)}


def load_onnx(path: str | Path) -> Any:
    """The ONNX graph at `path` (no external data), or a one-line error."""
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.is_file():
        raise TreefuseError(f"ONNX model not found: {path}; export one with `treefuse export onnx`")
    try:
        return onnx.load(str(path), load_external_data=False)
    except DecodeError as exc:  # protobuf's error for a corrupt file; anything else is not the file's fault
        raise TreefuseError(f"{path} is not a readable ONNX model ({type(exc).__name__})") from None


def check_tensorrt_onnx(path: str | Path, profile: ShapeProfile | None = None, model: Any = None) -> TrtCheck:
    """Every reason TensorRT's parser would refuse the model (or its input outside `profile`)."""
    path = Path(path)
    model = model if model is not None else load_onnx(path)
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    constants = _constants(model.graph)
    problems = _opset_problems(opset) + _domain_problems(model.graph)
    # Quantizers first: their activation zero points are the usual reason (an ONNX Runtime layout).
    qdq = sorted((node for node in model.graph.node if node.op_type in QDQ_OPS), key=lambda n: n.op_type != QDQ_OPS[0])
    per_channel = 0
    weight_readers = {node.input[1]: node for node in model.graph.node if node.op_type == "Conv" and len(node.input) > 1}
    for node in qdq:
        node_problems, is_per_channel = _qdq_problems(node, constants, opset, weight_readers)
        problems += node_problems
        per_channel += is_per_channel
    if profile is not None:
        problems += _input_problems(model.graph, profile)
    return TrtCheck(path, opset, len(qdq), per_channel, problems)


def require_tensorrt_onnx(path: str | Path, profile: ShapeProfile | None = None, model: Any = None) -> TrtCheck:
    """check_tensorrt_onnx, raising the first problem as a one-line TreefuseError."""
    result = check_tensorrt_onnx(path, profile, model)
    if not result.ok:
        raise TreefuseError(f"TensorRT would refuse {result.path}: {result.problems[0]}")
    return result


def _constants(graph: Any) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs by name: the tensors TensorRT sees at build time."""
    from onnx import numpy_helper

    values = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attribute in node.attribute:
                if attribute.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(attribute.t)
    return values


def _opset_problems(opset: int) -> list[str]:
    low, high = TENSORRT_OPSETS
    if low <= opset <= high:
        return []
    return [f"opset {opset} is outside the opsets TensorRT 10 parses ({low}..{high}); "
            "re-export with `treefuse export onnx --opset 17`"]


def _domain_problems(graph: Any) -> list[str]:
    custom = [node for node in graph.node if node.domain not in ("", "ai.onnx")]
    if not custom:
        return []
    node = custom[0]
    return [f"{node.op_type} '{node.name}' is a {node.domain} operator (ONNX Runtime only; {len(custom)} such "
            f"node(s)); {REEXPORT}"]


def _qdq_problems(node: Any, constants: dict[str, np.ndarray], opset: int,
                  weight_readers: dict[str, Any]) -> tuple[list[str], bool]:
    """Problems of one QuantizeLinear/DequantizeLinear node, and whether it is per-channel."""
    label = f"{node.op_type} '{node.name or node.output[0]}'"
    scale = constants.get(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        return [f"{label} has a scale that is not a constant initializer; TensorRT needs build-time scales"], False
    scale = np.asarray(scale, dtype=np.float64)
    if not np.all(np.isfinite(scale)) or np.any(scale <= 0):
        bad = scale[~(np.isfinite(scale) & (scale > 0))].ravel()[0]
        return [f"{label} has a scale of {bad} (scales must be positive and finite); recalibrate and {REEXPORT}"], False
    if node.op_type == "DequantizeLinear" and node.input[0] in constants:
        dtype = constants[node.input[0]].dtype
        if dtype != np.int8:
            return [f"{label} dequantizes a {dtype} tensor (TensorRT dequantizes INT8 only; an int32 input is a "
                    f"quantized bias: keep biases float); {REEXPORT}"], False
    problems = _zero_point_problems(node, label, constants)
    per_channel = scale.size > 1
    if per_channel:
        problems += _per_channel_problems(node, label, scale, constants, opset, weight_readers)
    return problems, per_channel


def _zero_point_problems(node: Any, label: str, constants: dict[str, np.ndarray]) -> list[str]:
    from onnx import helper

    attributes = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if len(node.input) < 3 or not node.input[2]:
        if node.op_type == "QuantizeLinear" and attributes.get("output_dtype", 0) != 3:  # 3: TensorProto.INT8
            return [f"{label} has no zero point, so ONNX makes its output uint8 (TensorRT takes signed INT8 "
                    f"with zero point 0 only); {REEXPORT}"]
        return []
    zero_point = constants.get(node.input[2])
    if zero_point is None:
        return [f"{label} has a zero point that is not a constant initializer; {REEXPORT}"]
    if zero_point.dtype != np.int8:
        return [f"{label} has a {zero_point.dtype} zero point (asymmetric, the ONNX Runtime layout); TensorRT "
                f"takes signed INT8 with zero point 0 only; {REEXPORT}"]
    if np.any(zero_point != 0):
        return [f"{label} has a non-zero zero point ({int(zero_point.ravel()[np.flatnonzero(zero_point)[0]])}); "
                f"TensorRT takes symmetric INT8 with zero point 0 only; {REEXPORT}"]
    return []


def _per_channel_problems(node: Any, label: str, scale: np.ndarray, constants: dict[str, np.ndarray], opset: int,
                          weight_readers: dict[str, Any]) -> list[str]:
    from onnx import helper

    if opset < PER_CHANNEL_MIN_OPSET:
        return [f"{label} is per-channel, which needs opset {PER_CHANNEL_MIN_OPSET} or later (model: {opset}); "
                "re-export with `--opset 17`"]
    axis = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "axis"), 1)
    conv = weight_readers.get(node.output[0]) if node.op_type == "DequantizeLinear" else None
    if conv is None:
        return []
    weight = constants.get(node.input[0])
    if axis != 0 or (weight is not None and scale.size != weight.shape[0]):
        return [f"{label} quantizes the weight of Conv '{conv.name}' on axis {axis} with {scale.size} scales; "
                f"TensorRT wants one scale per output channel on axis 0; {REEXPORT}"]
    return []


def _input_problems(graph: Any, profile: ShapeProfile) -> list[str]:
    """A fixed input dimension that the profile's min..max would change."""
    initializers = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initializers]
    if len(inputs) != 1:
        return [f"the model has {len(inputs)} inputs; the TensorRT profile describes one NCHW input"]
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 4:
        return [f"input '{inputs[0].name}' has rank {len(dims)}; the TensorRT profile describes NCHW (rank 4)"]
    for index, (dim, low, high) in enumerate(zip(dims, profile.min, profile.max)):
        if dim.HasField("dim_value") and not low == high == dim.dim_value:
            return [f"input '{inputs[0].name}' dimension {index} is fixed at {dim.dim_value} but the profile asks "
                    f"{low}..{high} (min {format_shape(profile.min)}, max {format_shape(profile.max)}); export with "
                    f"dynamic dimensions or set --min-shape/--max-shape to {dim.dim_value} there"]
    return []
