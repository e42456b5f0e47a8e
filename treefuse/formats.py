"""The format table: every artifact format treefuse exports or runs, in one declarative list.

It drives the CLI's backend kinds and `export` sub-commands, `--help`, the runner registry
and `treefuse info --json`. A new format is one new exporter/runner module plus one row.
Modules are named as strings and imported only when used, so a missing optional backend
never breaks the others.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass


@dataclass(frozen=True)
class Format:
    """One artifact format: what it is called, what makes it, what runs it."""

    kind: str  # the KIND in KIND:PATH on the command line
    suffix: str  # the artifact's file (or package folder) suffix
    precisions: tuple[str, ...]
    description: str
    runner: str  # "module:Class" of its Runner
    requires: tuple[str, ...] = ()  # Python modules the runner needs
    extra: str | None = None  # the pip extra that installs them (None: part of the core)
    export_cli: str | None = None  # module of its `treefuse export KIND` sub-command
    export_help: str = ""
    is_folder: bool = False  # the artifact is a folder (a package), not a file

    def missing_modules(self) -> list[str]:
        return [name for name in self.requires if importlib.util.find_spec(name) is None]

    def unavailable_reason(self) -> str | None:
        """None when this format runs here, else why not and how to fix it (one line)."""
        missing = self.missing_modules()
        if not missing:
            return None
        install = f"pip install 'treefuse[{self.extra}]'" if self.extra else "reinstall treefuse"
        return f"{', '.join(missing)} not installed: {install}"

    def to_json(self) -> dict[str, object]:
        reason = self.unavailable_reason()
        return {"kind": self.kind, "suffix": self.suffix, "precisions": list(self.precisions),
                "description": self.description, "extra": self.extra, "exportable": self.export_cli is not None,
                "available": reason is None, "why_unavailable": reason}


FORMATS: tuple[Format, ...] = (
    Format("torch", ".safetensors", ("fp32", "fp16", "bf16"), "treefuse weights on PyTorch (the reference)",
           "treefuse.runtimes.backends.torch_runner:TorchRunner", requires=("torch",)),
    Format("onnx", ".onnx", ("fp32", "fp16", "int8"), "ONNX model on ONNX Runtime",
           "treefuse.runtimes.backends.onnx_runner:OnnxRuntimeRunner", requires=("onnxruntime",),
           export_cli="treefuse.cli.export_onnx", export_help="ONNX (fp32, fp16 or int8 QDQ), folded, simplified, checked"),
    Format("trt", ".engine", ("fp32", "fp16", "int8"), "TensorRT engine (needs a GPU)",
           "treefuse.runtimes.backends.trt_runner:TensorRTRunner", requires=("tensorrt",), extra="tensorrt",
           export_cli="treefuse.cli.export_trt", export_help="TensorRT engine (fp16 or int8) from an ONNX model; needs a GPU"),
    Format("coreml", ".mlpackage", ("fp32", "fp16", "w8", "w8a8"), "Core ML package (treefuse's evaluator on Linux)",
           "treefuse.runtimes.backends.coreml_runner:CoreMLRunner", requires=("coremltools",), extra="coreml",
           export_cli="treefuse.cli.export_coreml", export_help="Core ML ML program (fp32, fp16, w8, w8a8)",
           is_folder=True),
    Format("openvino", ".onnx", ("fp32", "bf16", "int8"), "ONNX model on OpenVINO (x86 camera boxes)",
           "treefuse.runtimes.backends.openvino_runner:OpenVINORunner", requires=("openvino",), extra="openvino"),
    Format("executorch", ".pte", ("fp32", "int8"), "ExecuTorch program on XNNPACK (Android, embedded Linux)",
           "treefuse.runtimes.backends.executorch_runner:ExecuTorchRunner", requires=("executorch",), extra="executorch",
           export_cli="treefuse.cli.export_executorch", export_help="ExecuTorch program (.pte, XNNPACK), fp32 or int8"),
    Format("litert", ".tflite", ("fp32", "fp16", "int8"), "LiteRT model on XNNPACK (Android, embedded Linux)",
           "treefuse.runtimes.backends.litert_runner:LiteRTRunner", requires=("ai_edge_litert",), extra="litert",
           export_cli="treefuse.cli.export_litert", export_help="LiteRT model (.tflite, XNNPACK), fp32, fp16 or int8"),
)

FORMATS_BY_KIND: dict[str, Format] = {fmt.kind: fmt for fmt in FORMATS}


def exportable_formats() -> list[Format]:
    return [fmt for fmt in FORMATS if fmt.export_cli]
