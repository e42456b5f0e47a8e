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
    parser.add_argument("--out", type=Path, required=True, help="package folder to write (.mlpackage)")


def run(args: argparse.Namespace) -> int:
    from treefuse.cli.args import default_weights
    from treefuse.export.coreml_export import export_coreml

    weights = args.weights or default_weights()
    export_coreml(weights, args.out, precision=args.precision, min_hw=args.min_size, max_hw=args.max_size,
                  calibration=args.calib)
    print(f"wrote {args.out} ({args.precision}, inputs {args.min_size[0]}x{args.min_size[1]} .. "
          f"{args.max_size[0]}x{args.max_size[1]})")
    return 0
