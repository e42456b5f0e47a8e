"""The format table: every artifact format treefuse exports or runs, in one declarative list.

Each row names everything about its format: the runner, the exporter (one signature:
`export(request: ExportRequest) -> str`), the precisions with the gate row that judges each and
the INT8 scheme each needs, the shape options export takes, what else must be present for it
to run, and whether `treefuse benchmark` exports it. The CLI's backend kinds and `export`
sub-commands, `--precision` choices and help, the runner registry, `treefuse info --json`, the
benchmark matrix and the table-driven tests are all read off it. A new format is one exporter
folder (or none, for a runtime-only format), one runner module and one row. Modules are named
as strings and imported only when used, so a missing optional backend never breaks the others.
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from typing import Any, Callable

@dataclass(frozen=True)
class QuantScheme:
    """An INT8 arithmetic a runtime computes, and the hooks that fake-quantize it exactly for QAT."""

    description: str
    qat_start: str  # "module:function" writing a QAT run's starting point (post-training INT8) into RUN/base
    qat_network: str  # "module:function" loading the fake-quant network back from a run
    observers: bool  # ranges from observers (XNNPACK, Core ML) rather than learned scales (the ONNX layouts)
    other_exports: tuple[str, ...] = ()  # exports of a run not read off a row's precision (an exporter's --target)


# The INT8 arithmetic a quantized artifact computes; a QAT run fake-quantizes one of these exactly.
QUANT_SCHEMES: dict[str, QuantScheme] = {
    "ort-qdq": QuantScheme("ONNX Runtime QDQ: u8 affine per-tensor activations, s8 symmetric per-channel weights, "
                           "int32 biases", "treefuse.export.onnx.qat_export:make_qat_base",
                           "treefuse.export.onnx.qat_export:load_qat_module", observers=False),
    "trt-qdq": QuantScheme("TensorRT explicit QDQ: s8 symmetric activations and per-channel weights, zero point 0, "
                           "float biases", "treefuse.export.onnx.qat_export:make_qat_base",
                           "treefuse.export.onnx.qat_export:load_qat_module", observers=False,
                           other_exports=("export onnx --precision int8 --target tensorrt",)),
    "xnnpack-int8": QuantScheme("XNNPACK INT8 (PT2E XNNPACKQuantizer, QAT config): s8 affine per-tensor activations, "
                                "s8 symmetric per-channel weights [-127, 127]", "treefuse.export.pt2e.qat:make_start",
                                "treefuse.export.pt2e.qat:load_network", observers=True),
    "coreml-w8a8": QuantScheme("Core ML w8a8 (coremltools LinearQuantizer): s8 symmetric per-channel weights and "
                               "8-bit activations", "treefuse.export.coreml.qat:make_start",
                               "treefuse.export.coreml.qat:load_network", observers=True),
}


@dataclass(frozen=True)
class Precision:
    """One precision of a format: the gate row that judges it and, when quantized, its INT8 scheme."""

    name: str
    gate: str  # the row of treefuse/gates.py's DEFAULT_GATES
    scheme: str | None = None  # a QUANT_SCHEMES key when activations are 8-bit
    calibrated: bool = False  # post-training activation ranges: export needs --calib (or --qat RUN)
    benchmarked: bool = True  # part of `treefuse benchmark`'s matrix when the format is
    hint_of: str | None = None  # a runtime's compute hint, not an artifact: benchmark runs that precision's file
    cpu_flags: tuple[str, ...] = ()  # any one of these CPU flags is needed to run it (else "not on this CPU")


@dataclass(frozen=True)
class Shape:
    """The input-shape options `treefuse export KIND` takes: none, a range, one size, or TensorRT profiles."""

    style: str = "dynamic"  # "dynamic" | "range" (--min-size/--max-size) | "fixed" (--size) | "profile"
    min_hw: tuple[int, int] = (16, 16)
    max_hw: tuple[int, int] = (1088, 1920)
    size: tuple[int, int] = (256, 256)


@dataclass(frozen=True)
class Format:
    """One artifact format: what it is called, what makes it, what runs it, how it is judged."""

    kind: str  # the KIND in KIND:PATH on the command line
    suffix: str  # the artifact's file (or package folder) suffix
    precisions: tuple[Precision, ...]
    description: str
    runner: str  # "module:Class" of its Runner
    requires: tuple[str, ...] = ()  # Python modules the runner needs
    extra: str | None = None  # the pip extra that installs them (None: part of the core)
    exporter: str | None = None  # "module:function" converting an ExportRequest (export/request.py); None: runtime-only
    export_options: str | None = None  # module whose add_arguments(parser) adds the format's own options
    export_help: str = ""
    default_precision: str = "fp32"
    source: str = "weights"  # what export starts from: "weights", or "onnx" (an ONNX model)
    shape: Shape = field(default_factory=Shape)
    available: str | None = None  # "module:function" -> None or why it cannot run here, beyond `requires`
    not_benchmarked: str | None = None  # why `treefuse benchmark` leaves it out even when installed
    artifact_of: str | None = None  # the format whose files it runs (OpenVINO runs ONNX files)
    mixed_precision: bool = False  # INT8 export keeps the most sensitive layers in float given --paired-images
    is_folder: bool = False  # the artifact is a folder (a package), not a file
    package_marker: str | None = None  # a file every package of this format holds: a folder with it may be replaced
    slow_to_export: bool = False  # one conversion takes 10-40 s on 2 cores (the test suite marks such exports slow)
    bundle_engine: str | None = None  # torch-free module device bundles carry as bundle_runner/KIND_engine.py
    layers: str | None = None  # "module:function": active runner -> (batch -> {layer: output}), for `treefuse diff`
    profiler: str | None = None  # "module:function": (active runner, batch, runs) -> op timings, `treefuse profile`

    @property
    def precision_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.precisions)

    def precision(self, name: str) -> Precision:
        for precision in self.precisions:
            if precision.name == name:
                return precision
        raise KeyError(f"{self.kind} has no precision {name!r}")

    def missing_modules(self) -> list[str]:
        return [name for name in self.requires if importlib.util.find_spec(name) is None]

    def unavailable_reason(self) -> str | None:
        """None when this format runs here, else why not and how to fix it (one line)."""
        missing = self.missing_modules()
        if missing:
            install = f"pip install 'treefuse[{self.extra}]'" if self.extra else "reinstall treefuse"
            return f"{', '.join(missing)} not installed: {install}"
        return resolve(self.available)() if self.available else None

    def to_json(self) -> dict[str, Any]:
        reason = self.unavailable_reason()
        return {"kind": self.kind, "suffix": self.suffix, "precisions": list(self.precision_names),
                "gates": {p.name: p.gate for p in self.precisions},
                "int8_schemes": {p.name: p.scheme for p in self.precisions if p.scheme},
                "description": self.description, "extra": self.extra, "exportable": self.exporter is not None,
                "export_source": self.source if self.exporter else None, "shape_options": self.shape.style,
                "benchmarked": self.not_benchmarked is None, "why_not_benchmarked": self.not_benchmarked,
                "diff": self.layers is not None, "profile": self.profiler is not None,
                "available": reason is None, "why_unavailable": reason}


def resolve(target: str) -> Callable[..., Any]:
    """'module:name' -> the object, imported now (rows name their code as strings to stay lazy)."""
    module_name, _, name = target.partition(":")
    return getattr(importlib.import_module(module_name), name)


FP32, FP16 = Precision("fp32", "fp32"), Precision("fp16", "fp16")

FORMATS: list[Format] = [
    Format("torch", ".safetensors", tuple(Precision(name, name, benchmarked=False) for name in ("fp32", "fp16", "bf16")),
           "treefuse weights on PyTorch (the reference)",
           "treefuse.runtimes.backends.torch_runner:TorchRunner", requires=("torch",),
           layers="treefuse.runtimes.inspect.torch_layers:open_layers"),
    Format("onnx", ".onnx", (FP32, FP16, Precision("int8", "int8", "ort-qdq", calibrated=True)),
           "ONNX model on ONNX Runtime",
           "treefuse.runtimes.backends.onnx_runner:OnnxRuntimeRunner", requires=("onnxruntime",),
           exporter="treefuse.export.onnx.request:convert", export_options="treefuse.export.onnx.options",
           export_help="ONNX (fp32, fp16 or int8 QDQ), folded, simplified, checked", mixed_precision=True,
           layers="treefuse.runtimes.inspect.onnx_layers:open_layers",
           bundle_engine="treefuse.export.onnx.bundle_engine", profiler="treefuse.runtimes.inspect.onnx_profile:profile"),
    Format("trt", ".engine", (FP16, Precision("int8", "int8", "trt-qdq")),  # INT8 from a QDQ model, or --calib
           "TensorRT engine (needs a GPU)",
           "treefuse.runtimes.backends.trt_runner:TensorRTRunner", requires=("tensorrt",), extra="tensorrt",
           exporter="treefuse.export.tensorrt.request:convert", export_options="treefuse.export.tensorrt.options",
           export_help="TensorRT engine (fp16 or int8) from an ONNX model; needs a GPU",
           default_precision="fp16", source="onnx", shape=Shape("profile"),
           available="treefuse.export.tensorrt.request:gpu_missing",
           not_benchmarked="TensorRT engines are built on the GPU that runs them: `treefuse export trt` there "
                           "(docs/tensorrt.md)"),
    Format("coreml", ".mlpackage", (Precision("fp32", "fp32", benchmarked=False), FP16,
                                    Precision("w8", "w8", benchmarked=False),
                                    Precision("w8a8", "w8a8", "coreml-w8a8", calibrated=True)),
           "Core ML package (treefuse's evaluator on Linux)",
           "treefuse.runtimes.backends.coreml_runner:CoreMLRunner", requires=("coremltools",), extra="coreml",
           exporter="treefuse.export.coreml.exporter:convert", export_options="treefuse.export.coreml.options",
           export_help="Core ML ML program (fp32, fp16, w8, w8a8)", default_precision="fp16",
           layers="treefuse.runtimes.inspect.coreml_layers:open_layers",
           shape=Shape("range", min_hw=(64, 64), max_hw=(2048, 2048)), is_folder=True,
           package_marker="Manifest.json", slow_to_export=True),
    Format("openvino", ".onnx", (FP32, Precision("bf16", "bf16", benchmarked=False, hint_of="fp32",
                                                 cpu_flags=("avx512_bf16", "amx_bf16")),
                                 Precision("int8", "int8", "ort-qdq", calibrated=True)),
           "ONNX model on OpenVINO (x86 camera boxes)",
           "treefuse.runtimes.backends.openvino_runner:OpenVINORunner", requires=("openvino",), extra="openvino",
           artifact_of="onnx", layers="treefuse.runtimes.inspect.openvino_layers:open_layers",
           profiler="treefuse.runtimes.inspect.openvino_profile:profile"),
    Format("executorch", ".pte", (FP32, Precision("int8", "int8", "xnnpack-int8", calibrated=True)),
           "ExecuTorch program on XNNPACK (Android, embedded Linux)",
           "treefuse.runtimes.backends.executorch_runner:ExecuTorchRunner", requires=("executorch",),
           extra="executorch", exporter="treefuse.export.executorch.exporter:convert",
           export_options="treefuse.export.executorch.options",
           bundle_engine="treefuse.export.executorch.bundle_engine",
           export_help="ExecuTorch program (.pte, XNNPACK), fp32 or int8",
           layers="treefuse.runtimes.inspect.executorch_layers:open_layers",
           profiler="treefuse.runtimes.inspect.executorch_profile:profile",
           shape=Shape("range", min_hw=(16, 16), max_hw=(1088, 1920)), slow_to_export=True),
    Format("litert", ".tflite", (FP32, FP16, Precision("int8", "int8", "xnnpack-int8", calibrated=True)),
           "LiteRT model on XNNPACK (Android, embedded Linux)",
           "treefuse.runtimes.backends.litert_runner:LiteRTRunner", requires=("ai_edge_litert",), extra="litert",
           exporter="treefuse.export.litert.exporter:convert", export_options="treefuse.export.litert.options",
           export_help="LiteRT model (.tflite, XNNPACK), fp32, fp16 or int8", shape=Shape("fixed"),
           layers="treefuse.runtimes.inspect.litert_layers:open_layers",
           available="treefuse.export.litert.exporter:converter_missing",
           bundle_engine="treefuse.export.litert.bundle_engine", slow_to_export=True),
    Format("rknn", ".rknn", (FP16, Precision("int8", "int8", "ort-qdq", calibrated=True)),  # QAT: the ONNX QDQ run
           "RKNN model for a Rockchip NPU (judged on rknn-toolkit2's x86 simulator here)",
           "treefuse.runtimes.backends.rknn_runner:RknnRunner", exporter="treefuse.export.rknn.exporter:convert",
           export_options="treefuse.export.rknn.options",
           export_help="RKNN model (.rknn) for a Rockchip NPU (rk3588, rv1106, ...), fp16 or int8",
           default_precision="fp16", shape=Shape("fixed"), available="treefuse.runtimes.backends.rknn_runner:toolkit_missing",
           bundle_engine="treefuse.export.rknn.board_engine", slow_to_export=True,
           layers="treefuse.runtimes.inspect.rknn_layers:open_layers",
           not_benchmarked="its latency here is the toolkit's x86 simulator, not the NPU: time it on the board "
                           "(`treefuse pack rknn:m.rknn`, docs/rknn.md)"),
]


def formats_by_kind() -> dict[str, Format]:
    """kind -> row, read now (a test may add a row to FORMATS)."""
    return {fmt.kind: fmt for fmt in FORMATS}


def format_of(kind: str) -> Format:
    """The row of `kind`, or one line naming the kinds there are."""
    from treefuse.errors import TreefuseError

    rows = formats_by_kind()
    if kind not in rows:
        raise TreefuseError(f"unknown format {kind!r}; known formats: {', '.join(rows)}")
    return rows[kind]


def exportable_formats() -> list[Format]:
    return [fmt for fmt in FORMATS if fmt.exporter]


def benchmark_matrix() -> tuple[tuple[str, str], ...]:
    """(kind, precision) of every cell `treefuse benchmark` makes, in the table's order."""
    return tuple((fmt.kind, p.name) for fmt in FORMATS for p in fmt.precisions if p.benchmarked)


def not_benchmarked() -> dict[str, str]:
    """kind -> why the benchmark lists it without exporting it."""
    return {fmt.kind: fmt.not_benchmarked for fmt in FORMATS if fmt.not_benchmarked}


def qat_exports(scheme: str) -> tuple[str, ...]:
    """The `treefuse export` commands that take a QAT run of `scheme`: every row precision computing it."""
    from_rows = tuple(f"export {fmt.kind} --precision {p.name}" for fmt in FORMATS if fmt.exporter
                      and fmt.source == "weights" for p in fmt.precisions if p.scheme == scheme)
    return from_rows + QUANT_SCHEMES[scheme].other_exports


def bundle_kinds() -> list[str]:
    """The kinds a device bundle can carry: those whose row names a torch-free bundle engine."""
    return [fmt.kind for fmt in FORMATS if fmt.bundle_engine]


def scheme_of_kind() -> dict[str, str]:
    """kind -> the INT8 scheme its quantized precision computes (what `treefuse qat --target KIND` means)."""
    return {fmt.kind: p.scheme for fmt in FORMATS for p in fmt.precisions if p.scheme}


GPU_ONLY_EXTRAS = ("tensorrt",)  # its wheels install only beside CUDA: `make install` leaves it to GPU machines


def format_extras() -> list[str]:
    """The pip extras that install every format's runtime on a CPU machine, in table order (for the Makefile)."""
    return list(dict.fromkeys(fmt.extra for fmt in FORMATS if fmt.extra and fmt.extra not in GPU_ONLY_EXTRAS))


if __name__ == "__main__":  # `python3 treefuse/formats.py`: what `make install` installs, before treefuse is
    print(",".join(format_extras()))
