"""Export chains as small lazy loaders, in the spirit of Polygraphy's: each step takes a path
or another loader, and nothing runs until the chain is called with an output path.

    Int8OnnxFromOnnx(OnnxFromWeights(weights), calib_dir)(out)      # weights -> fp32 -> int8
    Fp16OnnxFromOnnx(OnnxFromWeights(weights))(out)                 # weights -> fp32 -> fp16

Intermediates live in a scratch folder the chain owns and removes when it is done.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable, Union

Source = Union[Path, "Step"]


class Step:
    """One lazy step: call it with an output path (or none, for a scratch file) to make its artifact."""

    suffix = ".onnx"

    def make(self, out: Path) -> Any:
        raise NotImplementedError

    def __call__(self, out: str | Path | None = None) -> Any:
        if out is not None:
            return self.make(Path(out))
        with tempfile.TemporaryDirectory(prefix="treefuse-chain-") as scratch:
            return self.make(Path(scratch) / f"intermediate{self.suffix}")


def _with_source(source: Source, use: Callable[[Path], Any]) -> Any:
    """Run `use` on the source's file: a path as it is, a step's output in a scratch folder."""
    if isinstance(source, Path):
        return use(source)
    with tempfile.TemporaryDirectory(prefix="treefuse-chain-") as scratch:
        return use(source.make(Path(scratch) / f"source{source.suffix}"))


class OnnxFromWeights(Step):
    """treefuse weights -> a folded, simplified, checked FP32 ONNX model."""

    def __init__(self, weights: str | Path, *, opset: int = 17, folded: bool = True) -> None:
        self.weights, self.opset, self.folded = Path(weights), opset, folded

    def make(self, out: Path) -> Path:
        from treefuse.export.onnx.exporter import export_onnx

        return export_onnx(self.weights, out, opset=self.opset, folded=self.folded)


class Fp16OnnxFromOnnx(Step):
    """FP32 ONNX -> FP16 weights and activations (input and output stay float32)."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def make(self, out: Path) -> Path:
        from treefuse.export.onnx.quantize import convert_fp16

        return _with_source(self.source, lambda fp32: convert_fp16(fp32, out) or out)


class Int8OnnxFromOnnx(Step):
    """FP32 ONNX -> static INT8 QDQ for a target runtime, calibrated, checked against the int8 gates."""

    def __init__(self, source: Source, calib_dir: str | Path, **options: Any) -> None:
        self.source, self.calib_dir, self.options = source, Path(calib_dir), options

    def make(self, out: Path) -> Any:
        from treefuse.export.onnx.quantize import quantize_int8

        return _with_source(self.source, lambda fp32: quantize_int8(fp32, out, self.calib_dir, **self.options))
