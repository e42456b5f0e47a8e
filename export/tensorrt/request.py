"""`treefuse export trt` as the format table calls it: an ONNX model -> a TensorRT engine at the staged path (on a GPU)."""
from __future__ import annotations

from pathlib import Path

from treefuse.export.request import Converted, ExportRequest


def gpu_missing() -> str | None:
    """The format table's availability check: None on a machine with a CUDA GPU, else why not."""
    import torch

    return None if torch.cuda.is_available() else "needs an NVIDIA GPU; none here"


def convert(request: ExportRequest, staged: Path) -> Converted:
    """Check the ONNX model against TensorRT's parser rules, plan, build at `staged` and judge the engine there
    against the ONNX model on ONNX Runtime; its sidecar and trtexec command line go beside it."""
    from treefuse.errors import TreefuseError
    from treefuse.export.tensorrt.build import import_tensorrt, plan_engine, trtexec_command, write_engine
    from treefuse.export.tensorrt.profile import DEFAULT_MAX, DEFAULT_MIN, DEFAULT_OPT, ShapeProfile

    if request.qat_run is not None:
        raise TreefuseError("export trt takes the QDQ ONNX model of a TensorRT QAT run: "
                            "`treefuse export onnx --target tensorrt --qat RUN`, then --onnx that model")
    options = request.options
    profile = ShapeProfile.from_text(options.get("min_shape") or DEFAULT_MIN, options.get("opt_shape") or DEFAULT_OPT,
                                     options.get("max_shape") or DEFAULT_MAX)
    plan = plan_engine(request.source, request.out, precision=request.precision, profile=profile,
                       calib_dir=options.get("calib"), timing_cache=options.get("timing_cache"),
                       fp16_calib=options.get("check_fp16"), strict_fp16=options.get("strict_fp16", False))
    parser_check = (f"TensorRT parser check passed: {plan.onnx_path} (opset {plan.tensorrt_check['opset']}, "
                    f"{plan.tensorrt_check['qdq_nodes']} Q/DQ nodes)")
    verdict = write_engine(plan, import_tensorrt(), staged, check=lambda engine: _check_engine(request, plan, engine))
    return Converted(f"{plan.precision}, int8 from {plan.int8_source or '-'}", verdict=verdict,
                     notes=(parser_check, f"equivalent: {trtexec_command(plan)}"))


def _check_engine(request: ExportRequest, plan, staged: Path) -> dict:
    """The staged engine on TensorRT against the ONNX model it was built from (ONNX Runtime), by its precision's gates."""
    from treefuse.export.verify import check_samples, gate_miss_advice, verify_export
    from treefuse.gates import gates_for

    hw_range = (tuple(plan.profile.min[2:]), tuple(plan.profile.max[2:]))
    samples, what = check_samples(request.options.get("calib"), None, hw_range)
    return verify_export(f"onnx:{request.source}", f"trt:{staged}", samples, gates_for(request.precision), what,
                         gate_miss_advice("trt", request.precision, qat_target="trt"))
