"""`treefuse export trt`: check an ONNX model, then build a TensorRT engine from it (the build needs a GPU)."""
from __future__ import annotations

import argparse

from treefuse.export.tensorrt.profile import DEFAULT_MAX, DEFAULT_MIN, DEFAULT_OPT


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--onnx", required=True, help="FP32 ONNX model, or an INT8 QDQ one for explicit int8")
    parser.add_argument("--precision", choices=("fp16", "int8"), required=True)
    parser.add_argument("--calib", help="calibration set folder (int8 from a non-QDQ model)")
    parser.add_argument("--min-shape", default=DEFAULT_MIN, help=f"smallest input NxCxHxW (default {DEFAULT_MIN})")
    parser.add_argument("--opt-shape", default=DEFAULT_OPT, help=f"input shape tuned for (default {DEFAULT_OPT})")
    parser.add_argument("--max-shape", default=DEFAULT_MAX, help=f"largest input NxCxHxW (default {DEFAULT_MAX})")
    parser.add_argument("--timing-cache", help="timing cache file to reuse and update across builds")
    parser.add_argument("--check-fp16", metavar="CALIB_DIR",
                        help="calibration set to measure layer ranges on against FP16 (default: --calib when given); "
                             "the result goes into the engine's sidecar")
    parser.add_argument("--strict-fp16", action="store_true",
                        help="refuse to build (exit 1) when a layer would overflow FP16 or flush its small values")
    parser.add_argument("--out", required=True, help="engine file to write (.engine)")


def run(args: argparse.Namespace) -> int:
    from treefuse.export.tensorrt.build import build_engine, import_tensorrt, plan_engine, trtexec_command
    from treefuse.export.tensorrt.profile import ShapeProfile

    profile = ShapeProfile.from_text(args.min_shape, args.opt_shape, args.max_shape)
    plan = plan_engine(args.onnx, args.out, precision=args.precision, profile=profile, calib_dir=args.calib,
                       timing_cache=args.timing_cache, fp16_calib=args.check_fp16, strict_fp16=args.strict_fp16)
    print(f"TensorRT parser check passed: {plan.onnx_path} (opset {plan.tensorrt_check['opset']}, "
          f"{plan.tensorrt_check['qdq_nodes']} Q/DQ nodes)")
    backend = import_tensorrt()
    engine = build_engine(plan, backend)
    print(f"wrote {engine} ({plan.precision}, int8 from {plan.int8_source or '-'}); provenance in {engine}.json")
    print(f"equivalent: {trtexec_command(plan)}")
    return 0
