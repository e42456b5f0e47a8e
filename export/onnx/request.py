"""`treefuse export onnx` as the format table calls it: one ExportRequest -> an fp32, fp16 or int8 ONNX model
at the staged path (export/request.py's pipeline judges, records and moves it).

fp32 and fp16 are judged by the pipeline against the PyTorch reference; int8 judges itself against the FP32
ONNX model it was quantized from (export/onnx/quantize.py, which keeps layers float until the gates pass).
"""
from __future__ import annotations

from pathlib import Path

from treefuse.errors import TreefuseError
from treefuse.export.request import Converted, ExportRequest

TARGETS = ("onnxruntime", "tensorrt")  # the runtime an INT8 model is laid out for


def convert(request: ExportRequest, staged: Path) -> Converted:
    """Write the ONNX model `request` asks for at `staged`."""
    from treefuse.export.onnx.chains import OnnxFromWeights

    options = dict(request.options)
    target = options.get("target", "onnxruntime")
    if target not in TARGETS:
        raise TreefuseError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    if request.precision != "int8" and target != "onnxruntime":
        raise TreefuseError("--target applies to --precision int8 only: fp32 and fp16 models run anywhere")
    if request.qat_run is not None:
        return _from_qat(request, staged, target)
    fp32 = OnnxFromWeights(request.source, opset=options.get("opset", 17), folded=not options.get("no_fold", False))
    if request.precision == "int8":
        return _int8(request, staged, fp32, target)
    return _float(request, staged, fp32)


def _float(request: ExportRequest, staged: Path, fp32) -> Converted:
    from treefuse.export.onnx.chains import Fp16OnnxFromOnnx
    from treefuse.export.verify import gate_miss_advice

    (fp32 if request.precision == "fp32" else Fp16OnnxFromOnnx(fp32))(staged)
    summary = "fp32" if request.precision == "fp32" else "fp16 weights and activations; input and output stay float32"
    return Converted(summary, calibration=request.calibration, advice=gate_miss_advice("onnx", request.precision))


def _int8(request: ExportRequest, staged: Path, fp32, target: str) -> Converted:
    from treefuse.export.onnx.chains import Int8OnnxFromOnnx

    notes = () if request.paired_images is not None else \
        ("note: task drop not measured (no --paired-images): every conv layer is int8",)
    # quantize_int8 lays the user's thresholds over the int8 gate row (None: the row's own)
    result = Int8OnnxFromOnnx(fp32, request.calibration, method=request.options.get("calib_method", "minmax"),
                              paired_dir=request.paired_images, max_task_drop_db=request.options.get("max_task_drop"),
                              max_worst_task_drop_db=request.options.get("max_worst_task_drop"),
                              progress=True, target=target)(staged)
    kept = f"{len(result.float_layers)} conv layer(s) kept in float" if result.float_layers else "all conv layers int8"
    table = f"; sensitivity table {result.sensitivity_path.name}" if result.sensitivity_path else ""
    return Converted(f"int8 QDQ for {target}, {kept}{table}", verdict=result.verification, notes=notes)


def _from_qat(request: ExportRequest, staged: Path, target: str) -> Converted:
    from treefuse.export.onnx.qat_export import export_qat_int8

    result = export_qat_int8(request.qat_run, staged, request.paired_images, target)
    return Converted(f"int8 QDQ for {target} with the scales and weights learned in {request.qat_run}",
                     verdict=result.verification)
