"""Execute a saved Core ML ML program on any OS: read the package from disk, evaluate its ops.

Core ML's own `predict` exists only on macOS. This evaluator reads the program and its
weights from the `.mlpackage` itself (never from PyTorch weights) and runs each MIL op
with torch on the CPU, its output in the dtype the program declares for it: an FP16
program's tensors are FP16 (convs accumulate in FP32, as torch's FP16 conv does, and round
their outputs to FP16), its quantize ops produce real int8/uint8 values.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.nn import functional as F

from treefuse.errors import TreefuseError, one_line
from treefuse.quiet import quiet_import

WEIGHTS_DIR = Path("Data") / "com.apple.CoreML" / "weights"
MANIFEST = "Manifest.json"
EXTRA_HINT = "install the Core ML extra: pip install 'treefuse[coreml]'"


def import_coremltools() -> Any:
    """coremltools, imported quietly (it warns about macOS-only parts on Linux), or a one-line error."""
    with quiet_import():
        try:
            import coremltools
        except ImportError:
            raise TreefuseError(f"coremltools is not installed; {EXTRA_HINT}") from None
    return coremltools


@dataclass(frozen=True)
class PackageProgram:
    """A package's model description (the spec) and its ML program read back with weights."""

    spec: Any
    program: Any
    path: Path

    @property
    def main(self) -> Any:
        return self.program.functions["main"]

    @property
    def input_name(self) -> str:
        return self.spec.description.input[0].name

    @property
    def output_name(self) -> str:
        return self.spec.description.output[0].name

    def metadata(self) -> dict[str, str]:
        """The package's user-defined metadata."""
        return dict(self.spec.description.metadata.userDefined)

    def precision(self) -> str:
        """The dtype of the program's input ('fp16' or 'fp32'), which its float ops compute in."""
        return _dtype_name(self.main.inputs[self.input_name].dtype)

    def flexible_hw(self) -> tuple[tuple[int, int], tuple[int, int]] | None:
        """(min_hw, max_hw) of the input's flexible height and width, None if the shape is fixed."""
        ranges = list(self.spec.description.input[0].type.multiArrayType.shapeRange.sizeRanges)
        if len(ranges) != 4:
            return None
        height, width = ranges[2], ranges[3]
        unbounded = 1 << 30  # an upper bound of -1 means "no limit"
        low = (int(height.lowerBound), int(width.lowerBound))
        high = (int(height.upperBound) if height.upperBound > 0 else unbounded,
                int(width.upperBound) if width.upperBound > 0 else unbounded)
        return low, high


def load_program(path: str | Path) -> PackageProgram:
    """Read an .mlpackage's spec and ML program, with const values taken from its weight file."""
    path = Path(path)
    if not path.is_dir() or not (path / MANIFEST).is_file():
        raise TreefuseError(f"{path} is not a Core ML package (no {MANIFEST}); export one with `treefuse export coreml`")
    ct = import_coremltools()
    from coremltools.converters.mil.frontend.milproto.load import load

    from google.protobuf.message import DecodeError

    try:
        spec = ct.utils.load_spec(str(path))
    except (DecodeError, RuntimeError, OSError) as exc:  # a corrupt spec, a bad Manifest.json, a missing file
        raise TreefuseError(f"{path} is not a readable Core ML package ({one_line(exc)}); re-export it") from None
    if spec.WhichOneof("Type") != "mlProgram":
        raise TreefuseError(f"{path} holds a {spec.WhichOneof('Type')} model, not an ML program; re-export it")
    try:
        program = load(spec, specification_version=spec.specificationVersion,
                       file_weights_dir=str(path / WEIGHTS_DIR))
    except (RuntimeError, ValueError, OSError) as exc:  # weight.bin missing, its sentinel or offsets wrong
        raise TreefuseError(f"{path}: cannot read its ML program or weights ({one_line(exc)}); "
                            "the package is corrupt, re-export it") from None
    return PackageProgram(spec, program, path)


# -- evaluation -------------------------------------------------------------------------------

_MIL_TO_TORCH = {"fp16": torch.float16, "fp32": torch.float32, "int8": torch.int8, "uint8": torch.uint8,
                 "int16": torch.int16, "int32": torch.int32, "bool": torch.bool}


def _dtype_name(mil_dtype: Any) -> str:
    from coremltools.converters.mil.mil import types

    return types.builtin_to_string(mil_dtype)


def _torch_dtype(var: Any) -> torch.dtype:
    name = _dtype_name(var.dtype)
    if name not in _MIL_TO_TORCH:
        raise TreefuseError(f"Core ML evaluator: tensor {var.name} has unsupported dtype {name}")
    return _MIL_TO_TORCH[name]


def _const(value: Any) -> Any:
    """A const value as a tensor (arrays, scalars) or as plain Python (strings, lists of ints)."""
    if isinstance(value, str):
        return value
    array = np.asarray(value)
    if array.dtype.kind in "fiub":
        return torch.from_numpy(np.require(array, requirements="CW"))
    return value


def _ints(value: Any) -> list[int]:
    return [int(v) for v in (value.tolist() if isinstance(value, torch.Tensor) else value)]


def _along(param: torch.Tensor, axis: int | None, ndim: int) -> torch.Tensor:
    """Broadcast a per-channel scale/zero point along `axis` of an ndim tensor (scalars pass)."""
    if param.ndim == 0 or axis is None:
        return param
    shape = [1] * ndim
    shape[axis % ndim] = -1
    return param.reshape(shape)


def _padding(args: dict[str, Any], kernel_hw: tuple[int, ...], dilations: list[int]) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) of a MIL conv's pad_type."""
    pad_type = args.get("pad_type", "valid")
    if pad_type == "custom":
        top, bottom, left, right = _ints(args["pad"])
        return top, bottom, left, right
    if pad_type == "same":
        kh, kw = [(k - 1) * d for k, d in zip(kernel_hw, dilations)]
        return kh // 2, kh - kh // 2, kw // 2, kw - kw // 2
    if pad_type == "valid":
        return 0, 0, 0, 0
    raise TreefuseError(f"Core ML evaluator: conv pad_type {pad_type!r} is not implemented")


def _conv(args: dict[str, Any], out_dtype: torch.dtype) -> torch.Tensor:
    # An FP16 conv is computed in FP32 on the FP16 values and its output rounded to FP16: torch's
    # own CPU FP16 conv accumulates in FP32 as well (outputs within 1 ulp), 4x slower. channels_last
    # takes oneDNN's direct path for the dilated convs (3x). Every tensor the program sees keeps its dtype.
    compute = torch.float32 if out_dtype == torch.float16 else out_dtype
    x = args["x"].to(out_dtype).to(compute)
    weight = args["weight"].to(out_dtype).to(compute).contiguous(memory_format=torch.channels_last)
    bias = args.get("bias")
    bias = None if bias is None else bias.to(out_dtype).to(compute)
    dilations, strides = _ints(args.get("dilations", [1, 1])), _ints(args.get("strides", [1, 1]))
    groups = int(args.get("groups", 1))
    top, bottom, left, right = _padding(args, tuple(weight.shape[2:]), dilations)
    if tuple(weight.shape[2:]) == (1, 1) and strides == [1, 1] and groups == 1 and top == bottom == left == right == 0:
        return _pointwise(x, weight, bias).to(out_dtype)
    padding = (top, left)
    if (top, left) != (bottom, right):  # asymmetric: pad first (conv2d pads both sides alike)
        x, padding = F.pad(x, (left, right, top, bottom)), (0, 0)
    x = x.contiguous(memory_format=torch.channels_last)
    return F.conv2d(x, weight, bias, stride=strides, padding=padding, dilation=dilations, groups=groups).to(out_dtype)


def _conv_native(args: dict[str, Any], out_dtype: torch.dtype) -> torch.Tensor:
    """The evaluator's conv before the FP32-accumulate path: torch's own conv in the declared dtype, NCHW."""
    x, weight = args["x"].to(out_dtype), args["weight"].to(out_dtype)
    bias = args.get("bias")
    dilations = _ints(args.get("dilations", [1, 1]))
    top, bottom, left, right = _padding(args, tuple(weight.shape[2:]), dilations)
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, None if bias is None else bias.to(out_dtype),
                    stride=_ints(args.get("strides", [1, 1])), dilation=dilations, groups=int(args.get("groups", 1)))


def _pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 conv as one matrix product over the pixels (4x faster than conv2d on the CPU)."""
    batch, _, height, width = x.shape
    pixels = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])  # a view when x is channels_last
    out = pixels @ weight.reshape(weight.shape[0], -1).t()
    if bias is not None:
        out += bias
    return out.reshape(batch, height, width, -1).permute(0, 3, 1, 2)  # channels_last strides


def _quantize(args: dict[str, Any], out_dtype: torch.dtype) -> torch.Tensor:
    x = args["input"]
    axis = int(args["axis"]) if "axis" in args else None
    scaled = x / _along(args["scale"].to(x.dtype), axis, x.ndim)
    if "zero_point" in args:
        scaled += _along(args["zero_point"].to(x.dtype), axis, x.ndim)
    info = torch.iinfo(out_dtype)
    # Core ML rounds half to even, as torch.round does.
    return torch.round_(scaled).clamp_(info.min, info.max).to(out_dtype)


def _dequantize(args: dict[str, Any], out_dtype: torch.dtype, data_key: str = "input") -> torch.Tensor:
    data = args[data_key]
    axis = int(args["axis"]) if "axis" in args else None
    values = data.to(torch.float32, copy=True)  # a fresh tensor: the in-place ops below never touch the input
    if "zero_point" in args:
        values -= _along(args["zero_point"].to(torch.float32), axis, data.ndim)
    values *= _along(args["scale"].to(torch.float32), axis, data.ndim)
    return values.to(out_dtype)


def _concat(args: dict[str, Any], out_dtype: torch.dtype) -> torch.Tensor:
    if bool(args.get("interleave", False)):
        raise TreefuseError("Core ML evaluator: concat with interleave=True is not implemented")
    return torch.cat([v.to(out_dtype) for v in args["values"]], dim=int(args["axis"]))


def _binary(fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> Callable[[dict[str, Any], torch.dtype], torch.Tensor]:
    return lambda args, out_dtype: fn(args["x"].to(out_dtype), args["y"].to(out_dtype))


OPS: dict[str, Callable[[dict[str, Any], torch.dtype], torch.Tensor]] = {
    "conv": _conv,
    "relu": lambda args, out_dtype: torch.relu(args["x"].to(out_dtype)),
    "add": _binary(torch.add),
    "sub": _binary(torch.sub),
    "mul": _binary(torch.mul),
    "concat": _concat,
    "cast": lambda args, out_dtype: args["x"].to(out_dtype),
    "identity": lambda args, out_dtype: args["x"].to(out_dtype),
    "quantize": _quantize,
    "dequantize": _dequantize,
    "constexpr_affine_dequantize": lambda args, out_dtype: _dequantize(args, out_dtype, "quantized_data"),
}

# torch's own FP16 conv: the evaluator before its FP32-accumulate path, kept to check that path against.
NATIVE_FP16_OPS = {**OPS, "conv": _conv_native}


def supported_ops() -> list[str]:
    """MIL op types this evaluator executes (besides const)."""
    return sorted(OPS)


def check_supported(program: PackageProgram) -> None:
    """Refuse a program holding an op the evaluator does not implement, naming the op."""
    for op in program.main.operations:
        if op.op_type != "const" and op.op_type not in OPS:
            raise TreefuseError(f"{program.path}: Core ML op {op.op_type!r} (in {op.name}) is not implemented by "
                                f"treefuse's MIL evaluator; it runs {', '.join(supported_ops())}")


def evaluate(program: PackageProgram, image: np.ndarray,
             ops: dict[str, Callable[[dict[str, Any], torch.dtype], torch.Tensor]] = OPS) -> np.ndarray:
    """Run the program on one 1x3xHxW float32 image; returns the output as float32."""
    return evaluate_all(program, image, ops)[program.main.outputs[0].name].to(torch.float32).numpy()


def evaluate_all(program: PackageProgram, image: np.ndarray,
                 ops: dict[str, Callable[[dict[str, Any], torch.dtype], torch.Tensor]] = OPS) -> dict[str, Any]:
    """Run the program on one 1x3xHxW float32 image; every variable's value by name (`treefuse diff` reads them)."""
    main = program.main
    input_var = main.inputs[program.input_name]
    writable = np.require(image, requirements="W")  # torch warns on a read-only array
    values: dict[str, Any] = {input_var.name: torch.from_numpy(writable).to(_torch_dtype(input_var))}

    def read(var: Any) -> Any:
        if isinstance(var, (list, tuple)):
            return [read(v) for v in var]
        return values[var.name] if var.name in values else _const(var.val)

    with torch.inference_mode():
        for op in main.operations:
            out = op.outputs[0]
            if op.op_type == "const":
                values[out.name] = _const(out.val)
                continue
            if op.op_type not in ops:
                raise TreefuseError(f"Core ML op {op.op_type!r} is not implemented by treefuse's MIL evaluator")
            args = {name: read(var) for name, var in op.inputs.items()}
            values[out.name] = ops[op.op_type](args, _torch_dtype(out))
    return values
