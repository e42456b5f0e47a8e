"""`treefuse check --target tensorrt M.onnx`: would TensorRT's parser accept this model? (no GPU needed)"""
from __future__ import annotations

import argparse

from treefuse.export.tensorrt.profile import DEFAULT_MAX, DEFAULT_MIN, DEFAULT_OPT

EXAMPLES = """\
examples:
  treefuse check --target tensorrt m.int8.trt.onnx
  treefuse check --target tensorrt m.onnx --min-shape 1x3x240x320 --max-shape 1x3x1080x1920 --json check.json

Refuses signed/unsigned and zero-point mismatches in Q/DQ (TensorRT takes INT8 with zero point 0),
non-positive or non-finite scales, int32 (bias) dequantizers, per-channel weight scales off axis 0,
opsets TensorRT 10 does not parse, ONNX Runtime-only operators, and fixed input dimensions outside
the profile. `treefuse export trt` runs the same check before it builds anything.
exit 0: TensorRT would accept it, 2: it would not (one line names the first problem and the fix)
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.cli.args import add_json_option

    parser.epilog = EXAMPLES
    parser.add_argument("model", metavar="M.onnx", help="ONNX model to check")
    parser.add_argument("--target", choices=("tensorrt",), required=True, help="the runtime to check against")
    parser.add_argument("--min-shape", default=DEFAULT_MIN, help=f"profile's smallest input (default {DEFAULT_MIN})")
    parser.add_argument("--opt-shape", default=DEFAULT_OPT, help=f"profile's tuned input (default {DEFAULT_OPT})")
    parser.add_argument("--max-shape", default=DEFAULT_MAX, help=f"profile's largest input (default {DEFAULT_MAX})")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from treefuse.errors import TreefuseError
    from treefuse.export.tensorrt.check import check_tensorrt_onnx
    from treefuse.export.tensorrt.profile import ShapeProfile
    from treefuse.files import write_json_atomic
    from treefuse.provenance import provenance

    profile = ShapeProfile.from_text(args.min_shape, args.opt_shape, args.max_shape)
    result = check_tensorrt_onnx(args.model, profile)
    if args.json:
        write_json_atomic(args.json, {**result.to_dict(), "profile": profile.to_dict(), "kind": "treefuse-check",
                                      "provenance": provenance()})
    if not result.ok:
        raise TreefuseError(f"TensorRT would refuse {result.path}: {result.problems[0]}")
    print(f"ok: TensorRT would accept {result.path} (opset {result.opset}, {result.qdq_nodes} Q/DQ nodes, "
          f"INT8 with zero point 0, {result.per_channel_dequantizers} per-channel weight dequantizers on axis 0)")
    return 0
