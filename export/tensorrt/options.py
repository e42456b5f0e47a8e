"""`treefuse export trt`'s own options: the ONNX model it starts from, profiles, calibrator, caches, FP16 ranges."""
from __future__ import annotations

import argparse

EXAMPLES = ("examples:\n"
            "  treefuse export trt --onnx m.onnx --precision fp16 --out m.engine\n"
            "  treefuse export trt --onnx m.trt.onnx --precision int8 --out m.int8.engine   # QDQ from export onnx "
            "--target tensorrt\n\n"
            "The model must pass `treefuse check --target tensorrt` first (done here before any build).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.export.tensorrt.profile import DEFAULT_MAX, DEFAULT_MIN, DEFAULT_OPT

    parser.epilog = EXAMPLES
    parser.add_argument("--calib", help="calibration set folder (int8 from a non-QDQ model: TensorRT's calibrator)")
    parser.add_argument("--min-shape", default=DEFAULT_MIN, help=f"smallest input NxCxHxW (default {DEFAULT_MIN})")
    parser.add_argument("--opt-shape", default=DEFAULT_OPT, help=f"input shape tuned for (default {DEFAULT_OPT})")
    parser.add_argument("--max-shape", default=DEFAULT_MAX, help=f"largest input NxCxHxW (default {DEFAULT_MAX})")
    parser.add_argument("--timing-cache", help="timing cache file to reuse and update across builds")
    parser.add_argument("--check-fp16", metavar="CALIB_DIR",
                        help="calibration set to measure layer ranges on against FP16 (default: --calib when given); "
                             "the result goes into the engine's sidecar")
    parser.add_argument("--strict-fp16", action="store_true",
                        help="refuse to build (exit 1) when a layer would overflow FP16 or flush its small values")
