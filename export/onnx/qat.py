"""A QDQ INT8 ONNX graph (ONNX Runtime's or TensorRT's layout) as a differentiable PyTorch module, written back.

TensorRT's layout (export/tensorrt/qdq.py) is read the same way: its activations are s8 with zero
point 0 (levels -128..127, taken from the zero point's type), its biases stay float and are learned
as they are, and its Relu and Concat nodes run as themselves.

Quantization-aware fine-tuning must see exactly what ONNX Runtime will run, so the module is
built from the INT8 export itself (after the fold, the split concatenations, the padded head
and widened tail): every QuantizeLinear is a fake-quantizer at the same tensor with the same
scale and zero point (u8 affine, round half to even, saturate), every weight is fake-quantized
s8 symmetric per output channel (levels -127..127, as ORT's quantizer writes them), and every
bias is rounded to int32 at scale input_scale x weight_scale, as the quantizer does. Nodes left
float in the export (the output X + residual) stay float. ReLUs are absent from the QDQ graph:
the u8 range starting at zero point 0 is the ReLU, in ORT and here alike.

What is learned: the float weights and biases, and every scale as a multiplier (starting at
exactly 1.0, so an untrained module is the PTQ model bit for bit). Zero points stay the
calibration's: the ReLU outputs' zero point 0 is what makes them ReLUs, and the symmetric
weight zero point 0 is what keeps ORT's fast symmetric-conv kernels. `write_learned` puts the
learned values into a copy of the same QDQ model: same nodes, same names, new initializer
values; nothing is re-calibrated.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from treefuse.errors import TreefuseError

QUANT_SUFFIX = "_quantized"  # ORT's quantizer names a quantized initializer NAME + this
# Weight levels per bit width: ORT's symmetric int8 range, and its reduce_range (7-bit) one.
WEIGHT_LEVELS = {8: (-127, 127), 7: (-64, 64)}
# Activation levels by the zero point's type: ORT's u8 affine, TensorRT's s8 symmetric (zero point 0).
ACTIVATION_LEVELS = {np.dtype(np.uint8): (0, 255), np.dtype(np.int8): (-128, 127)}
SUPPORTED_OPS = {"QuantizeLinear", "DequantizeLinear", "Conv", "Add", "Relu", "Pad", "Slice", "Concat"}


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round half to even (as ORT does) forward; identity gradient backward."""
    return x + (torch.round(x) - x).detach()


class _FakeQuantize(torch.autograd.Function):
    """LSQ fake quantization in one pass: STE for x inside the range, LSQ's gradient for the scale."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, low: int,
                high: int) -> torch.Tensor:
        scaled = x / scale
        rounded = torch.round(scaled)
        levels = rounded + zero_point
        inside = (levels >= low) & (levels <= high)
        levels = torch.clamp(levels, low, high) - zero_point
        ctx.save_for_backward(inside, torch.where(inside, rounded - scaled, levels), scale)
        return levels * scale

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inside, scale_slope, scale = ctx.saved_tensors
        grad_x = grad * inside if ctx.needs_input_grad[0] else None
        grad_scale = None
        if ctx.needs_input_grad[1]:
            product = grad * scale_slope
            dims = [d for d in range(product.dim()) if scale.dim() == 0 or scale.shape[d] == 1]
            grad_scale = product.sum(dim=dims, keepdim=scale.dim() > 0).reshape(scale.shape)
        return grad_x, grad_scale, None, None, None


def fake_quantize(x: torch.Tensor, scale: torch.Tensor, zero_point: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """Dequantize(Quantize(x)): levels round half to even, saturate to [low, high]; learnable scale (LSQ)."""
    return _FakeQuantize.apply(x, scale, zero_point, low, high)


@dataclass(frozen=True)
class _Node:
    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    attrs: dict[str, Any]


def _key(name: str) -> str:
    """A parameter key for an ONNX tensor name (ParameterDict keys may not hold dots)."""
    return re.sub(r"[^0-9A-Za-z_]", "_", name)


class FakeQuantQdq(nn.Module):
    """Runs a QDQ INT8 ONNX model in PyTorch with fake quantization at every Q/DQ, as ORT computes it."""

    def __init__(self, qdq_model: Any, float_model: Any, weight_bits: int = 8) -> None:
        super().__init__()
        from onnx import helper, numpy_helper

        constants = {i.name: numpy_helper.to_array(i) for i in qdq_model.graph.initializer}
        floats = {i.name: numpy_helper.to_array(i) for i in float_model.graph.initializer}
        self.nodes = [_Node(n.op_type, tuple(n.input), tuple(n.output),
                            {a.name: helper.get_attribute_value(a) for a in n.attribute}) for n in qdq_model.graph.node]
        unsupported = {n.op for n in self.nodes} - SUPPORTED_OPS
        if unsupported:
            raise TreefuseError(f"the INT8 model holds ops QAT cannot mirror ({sorted(unsupported)}); "
                                "export it with the standard int8 settings")
        self.input_name = qdq_model.graph.input[0].name
        self.output_name = qdq_model.graph.output[0].name
        if weight_bits not in WEIGHT_LEVELS:
            raise TreefuseError(f"weight bits must be one of {sorted(WEIGHT_LEVELS)}, got {weight_bits}")
        self.weight_levels = WEIGHT_LEVELS[weight_bits]
        self.tensors = nn.ParameterDict()  # learned float weights and biases, by their float names
        self.multipliers = nn.ParameterDict()  # learned scale multipliers, by scale initializer name
        self.names: dict[str, str] = {}  # parameter key -> ONNX initializer name
        self.constants: dict[str, np.ndarray] = constants
        self.bias_inputs: dict[str, tuple[str, str]] = {}  # bias DQ output -> (input scale, weight scale)
        self.float_biases: set[str] = set()  # biases left float (TensorRT's layout): learned as they are
        self._collect(constants, floats)

    def _collect(self, constants: dict[str, np.ndarray], floats: dict[str, np.ndarray]) -> None:
        producers = {out: n for n in self.nodes for out in n.outputs}
        for node in self.nodes:
            if node.op == "QuantizeLinear":
                self._add_scale(node.inputs[1], constants)
            elif node.op == "DequantizeLinear" and node.inputs[0] in constants:
                source = node.inputs[0]
                if not source.endswith(QUANT_SUFFIX) or source[:-len(QUANT_SUFFIX)] not in floats:
                    raise TreefuseError(f"INT8 model: no float value for {source} in the rewritten FP32 model")
                float_name = source[:-len(QUANT_SUFFIX)]
                self.tensors[_key(float_name)] = nn.Parameter(torch.from_numpy(floats[float_name].copy()))
                self.names[_key(float_name)] = float_name
                if constants[source].dtype == np.int8:
                    self._add_scale(node.inputs[1], constants)
            elif node.op == "Conv" and len(node.inputs) > 2 and node.inputs[2] in constants:
                self.float_biases.add(node.inputs[2])
                self.tensors[_key(node.inputs[2])] = nn.Parameter(torch.from_numpy(constants[node.inputs[2]].copy()))
                self.names[_key(node.inputs[2])] = node.inputs[2]
            elif node.op == "Conv" and len(node.inputs) > 2:
                activation, weight = producers[node.inputs[0]], producers[node.inputs[1]]
                self.bias_inputs[node.inputs[2]] = (activation.inputs[1], weight.inputs[1])

    def _add_scale(self, name: str, constants: dict[str, np.ndarray]) -> None:
        if _key(name) not in self.multipliers:
            self.multipliers[_key(name)] = nn.Parameter(torch.ones(constants[name].shape))
            self.names[_key(name)] = name

    def scale(self, name: str) -> torch.Tensor:
        """The current value of a scale initializer: calibrated value x learned multiplier (float32)."""
        return torch.from_numpy(self.constants[name]) * self.multipliers[_key(name)]

    def scale_parameters(self) -> list[nn.Parameter]:
        return list(self.multipliers.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        return list(self.tensors.values())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {self.input_name: x}
        for node in self.nodes:
            env[node.outputs[0]] = self._run(node, env)
        return env[self.output_name]

    def _run(self, node: _Node, env: dict[str, torch.Tensor]) -> torch.Tensor:
        if node.op == "QuantizeLinear":
            return self._quantize_activation(env[node.inputs[0]], node)
        if node.op == "DequantizeLinear":
            return self._dequantize(node, env)
        if node.op == "Conv":
            return self._conv(node, env)
        if node.op == "Add":
            return env[node.inputs[0]] + env[node.inputs[1]]
        if node.op == "Relu":  # one the quantizer could not fold into a u8 range (every one in TensorRT's layout)
            return F.relu(env[node.inputs[0]])
        if node.op == "Concat":
            return torch.cat([env[name] for name in node.inputs], dim=node.attrs.get("axis", 1))
        if node.op == "Pad":
            pads = self.constants[node.inputs[1]].tolist()
            if any(pads[i] for i in (0, 2, 3, 4, 6, 7)) or node.attrs.get("mode", b"constant") not in (b"constant", "constant"):
                raise TreefuseError(f"INT8 model: Pad {node.inputs} is not a zero channel pad; QAT cannot mirror it")
            return F.pad(env[node.inputs[0]], (0, 0, 0, 0, pads[1], pads[5]))
        return self._slice(node, env)

    def _quantize_activation(self, x: torch.Tensor, node: _Node) -> torch.Tensor:
        # Q and its DQ share one scale and zero point: Q emits the dequantized value, DQ passes it on.
        zero_point = self.constants[node.inputs[2]]
        levels = ACTIVATION_LEVELS[zero_point.dtype]
        return fake_quantize(x, self.scale(node.inputs[1]), torch.from_numpy(zero_point.astype(np.float32)), *levels)

    def _dequantize(self, node: _Node, env: dict[str, torch.Tensor]) -> torch.Tensor:
        source = node.inputs[0]
        if source not in self.constants:
            return env[source]
        value = self.tensors[_key(source[:-len(QUANT_SUFFIX)])]
        if self.constants[source].dtype == np.int8:
            scale = _per_channel(self.scale(node.inputs[1]), value.dim(), node.attrs.get("axis", 1))
            return fake_quantize(value, scale, torch.zeros(()), *self.weight_levels)
        input_scale, weight_scale = self.bias_inputs[node.outputs[0]]
        bias_scale = self.scale(input_scale) * self.scale(weight_scale)
        return round_ste(value / bias_scale) * bias_scale

    def _conv(self, node: _Node, env: dict[str, torch.Tensor]) -> torch.Tensor:
        attrs = node.attrs
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if pads[:2] != pads[2:]:
            raise TreefuseError(f"INT8 model: Conv {node.inputs[1]} pads unevenly; QAT cannot mirror it")
        bias = None
        if len(node.inputs) > 2:
            name = node.inputs[2]
            bias = self.tensors[_key(name)] if name in self.float_biases else env[name]
        return F.conv2d(env[node.inputs[0]], env[node.inputs[1]], bias, stride=tuple(attrs.get("strides", [1, 1])),
                        padding=tuple(pads[:2]), dilation=tuple(attrs.get("dilations", [1, 1])),
                        groups=attrs.get("group", 1))

    def _slice(self, node: _Node, env: dict[str, torch.Tensor]) -> torch.Tensor:
        starts, ends, axes = (self.constants[name].tolist() for name in node.inputs[1:4])
        x = env[node.inputs[0]]
        for start, end, axis in zip(starts, ends, axes):
            x = x.narrow(axis, start, min(end, x.shape[axis]) - start)
        return x

    @torch.no_grad()
    def learned_initializers(self) -> dict[str, np.ndarray]:
        """Every initializer the learning changed, as the QDQ model stores it (computed as forward does)."""
        values: dict[str, np.ndarray] = {}
        for key, name in self.names.items():
            if key in self.multipliers:
                values[name] = self.scale(name).numpy().astype(np.float32)
            elif name in self.float_biases:
                values[name] = self.tensors[key].numpy().astype(np.float32)
        for node in self.nodes:
            source = node.inputs[0] if node.op == "DequantizeLinear" else None
            if source is None or source not in self.constants:
                continue
            value = self.tensors[_key(source[:-len(QUANT_SUFFIX)])]
            if self.constants[source].dtype == np.int8:
                scale = _per_channel(self.scale(node.inputs[1]), value.dim(), node.attrs.get("axis", 1))
                values[source] = torch.clamp(torch.round(value / scale), *self.weight_levels).numpy().astype(np.int8)
            else:
                input_scale, weight_scale = self.bias_inputs[node.outputs[0]]
                bias_scale = self.scale(input_scale) * self.scale(weight_scale)
                values[source] = torch.round(value / bias_scale).numpy().astype(np.int32)
                values[node.inputs[1]] = bias_scale.numpy().astype(np.float32)
        return values


def _per_channel(scale: torch.Tensor, dims: int, axis: int) -> torch.Tensor:
    if scale.dim() == 0:
        return scale
    shape = [1] * dims
    shape[axis % dims] = -1
    return scale.reshape(shape)


def write_learned(qdq_model: Any, module: FakeQuantQdq) -> Any:
    """A copy of the QDQ model with the module's learned initializers; graph and names unchanged."""
    import copy

    from onnx import numpy_helper

    learned = module.learned_initializers()
    model = copy.deepcopy(qdq_model)
    for initializer in model.graph.initializer:
        if initializer.name in learned:
            old = numpy_helper.to_array(initializer)
            new = learned.pop(initializer.name)
            if new.shape != old.shape or new.dtype != old.dtype:
                raise TreefuseError(f"learned {initializer.name} is {new.dtype}{list(new.shape)}, "
                                    f"the model holds {old.dtype}{list(old.shape)}; report this as a bug")
            initializer.CopyFrom(numpy_helper.from_array(new, initializer.name))
    if learned:
        raise TreefuseError(f"learned values for tensors the INT8 model lacks: {sorted(learned)[:3]}; report this as a bug")
    return model

