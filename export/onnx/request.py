"""`treefuse export onnx` as the format table calls it: one ExportRequest -> an fp32, fp16 or int8 ONNX model.

fp32 and fp16 are judged here against the PyTorch reference before they are moved into place;
int8 judges itself against the FP32 ONNX model it was quantized from (export/onnx/quantize.py).
"""
from __future__ import annotations

from treefuse.errors import TreefuseError
from treefuse.export.request import ExportRequest

TARGETS = ("onnxruntime", "tensorrt")  # the runtime an INT8 model is laid out for


def export(request: ExportRequest) -> str:
    """Write the ONNX model `request` asks for; returns the line to print."""
    from treefuse.export.onnx.chains import OnnxFromWeights

    options = dict(request.options)
    target = options.get("target", "onnxruntime")
    if target not in TARGETS:
        raise TreefuseError(f"--target must be one of {', '.join(TARGETS)}, got {target!r}")
    if request.precision != "int8" and target != "onnxruntime":
        raise TreefuseError("--target applies to --precision int8 only: fp32 and fp16 models run anywhere")
    if request.qat_run is not None:
        return _from_qat(request, target)
    fp32 = OnnxFromWeights(request.source, opset=options.get("opset", 17), folded=not options.get("no_fold", False))
    if request.precision == "int8":
        return _int8(request, fp32, target)
    return _float(request, fp32)


def _float(request: ExportRequest, fp32) -> str:
    from treefuse.export.onnx.chains import Fp16OnnxFromOnnx
    from treefuse.export.verify import check_figures, gate_miss_advice, verify_staged
    from treefuse.files import atomic_path

    step = fp32 if request.precision == "fp32" else Fp16OnnxFromOnnx(fp32)
    with atomic_path(request.out) as staged:
        step(staged)
        verdict = verify_staged("onnx", staged, request.source, request.precision, request.calibration,
                                request.paired_images, advice=gate_miss_advice("onnx", request.precision))
    detail = "" if request.precision == "fp32" else " (fp16 weights and activations; input and output stay float32)"
    return f"wrote {request.out}{detail}\n{check_figures(verdict)}"


def _int8(request: ExportRequest, fp32, target: str) -> str:
    from treefuse.export.onnx.chains import Int8OnnxFromOnnx

    lines = []
    if request.paired_images is None:
        lines.append("note: task drop not measured (no --paired-images): every conv layer is int8")
    # quantize_int8 lays the user's thresholds over the int8 gate row (None: the row's own)
    result = Int8OnnxFromOnnx(fp32, request.calibration, method=request.options.get("calib_method", "minmax"),
                              paired_dir=request.paired_images, max_task_drop_db=request.options.get("max_task_drop"),
                              max_worst_task_drop_db=request.options.get("max_worst_task_drop"),
                              progress=True, target=target)(request.out)
    kept = f"{len(result.float_layers)} conv layer(s) kept in float" if result.float_layers else "all conv layers int8"
    lines.append(f"wrote {request.out} (int8 QDQ for {target}, {kept})"
                 + (f"; sensitivity table {result.sensitivity_path}" if result.sensitivity_path else ""))
    return "\n".join(lines)


def _from_qat(request: ExportRequest, target: str) -> str:
    from treefuse.export.onnx.qat_export import export_qat_int8

    export_qat_int8(request.qat_run, request.out, request.paired_images, target)
    return f"wrote {request.out} (int8 QDQ for {target} with the scales and weights learned in {request.qat_run})"
