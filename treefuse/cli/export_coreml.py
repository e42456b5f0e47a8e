"""`treefuse export coreml`: weights -> a Core ML ML program (.mlpackage) with flexible H x W."""
from __future__ import annotations

import argparse
from pathlib import Path

PRECISION_CHOICES = ("fp32", "fp16", "w8", "w8a8")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.cli.args import parse_size

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("examples:\n"
                     "  treefuse export coreml --precision fp16 --out m.mlpackage\n"
                     "  treefuse export coreml --precision w8a8 --calib calib/ --min-size 240x320 --max-size 1080x1920 "
                     "--out m.mlpackage\n\n"
                     "fp32/fp16: float weights and compute; w8: 8-bit weights, FP16 compute; w8a8: 8-bit weights\n"
                     "and activations calibrated on a treefuse calibration set (iOS17 target). Check the result on\n"
                     "Linux with: treefuse parity --ref torch:W --cand coreml:m.mlpackage --images DIR")
    parser.add_argument("--weights", type=Path, default=None, help="treefuse weights (default: the shipped ones)")
    parser.add_argument("--precision", default="fp16", help=f"one of {', '.join(PRECISION_CHOICES)} (default fp16)")
    parser.add_argument("--calib", type=Path, default=None, metavar="CALIB_DIR",
                        help="calibration set folder (`treefuse calib build`); required for w8a8")
    parser.add_argument("--min-size", type=parse_size, default=(64, 64), metavar="HxW",
                        help="smallest input the package accepts (default 64x64)")
    parser.add_argument("--max-size", type=parse_size, default=(2048, 2048), metavar="HxW",
                        help="largest input the package accepts (default 2048x2048)")
    parser.add_argument("--check-fp16", type=Path, default=None, metavar="CALIB_DIR",
                        help="FP16-compute precisions: measure layer ranges on this calibration set against FP16 "
                             "first and write OUT.fp16-ranges.json beside the package")
    parser.add_argument("--strict-fp16", action="store_true",
                        help="refuse (exit 1) when a layer would overflow FP16 or flush its small values")
    parser.add_argument("--out", type=Path, required=True, help="package folder to write (.mlpackage)")


def run(args: argparse.Namespace) -> int:
    from treefuse.cli.args import default_weights
    from treefuse.export.coreml.exporter import export_coreml

    weights = args.weights or default_weights()
    ranges = _fp16_ranges(args, weights)
    export_coreml(weights, args.out, precision=args.precision, min_hw=args.min_size, max_hw=args.max_size,
                  calibration=args.calib)
    print(f"wrote {args.out} ({args.precision}, inputs {args.min_size[0]}x{args.min_size[1]} .. "
          f"{args.max_size[0]}x{args.max_size[1]})")
    if ranges is not None:
        from treefuse.export.tensorrt.fp16_range import write_report

        print(f"FP16 ranges: {write_report(ranges, args.out.with_name(args.out.name + '.fp16-ranges.json'))}")
    return 0


def _fp16_ranges(args: argparse.Namespace, weights: Path) -> dict | None:
    """FP16 safety of the network Core ML will compute in FP16 (export/tensorrt/fp16_range.py), when asked for."""
    from treefuse.errors import TreefuseError

    if args.check_fp16 is None:
        if args.strict_fp16:
            raise TreefuseError("--strict-fp16 needs a calibration set to measure ranges on: pass --check-fp16 CALIB_DIR")
        return None
    if args.precision == "fp32":
        raise TreefuseError("--check-fp16 judges FP16 compute; fp32 computes in FP32: drop it or choose fp16/w8/w8a8")
    from treefuse.export.tensorrt.fp16_range import fp16_report_for_weights

    return fp16_report_for_weights(weights, args.check_fp16, strict=args.strict_fp16)
