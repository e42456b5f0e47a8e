"""`treefuse export executorch`: weights -> an XNNPACK-lowered ExecuTorch program (.pte), fp32 or int8."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.cli.args import add_export_options, parse_size

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("examples:\n"
                     "  treefuse export executorch --out m.pte\n"
                     "  treefuse export executorch --precision int8 --calib calib/ --max-size 720x1280 --out m.int8.pte\n\n"
                     "Height and width are dynamic within --min-size .. --max-size (ExecuTorch plans memory for the\n"
                     "maximum). int8 is PyTorch's PT2E flow with the XNNPACK quantizer, calibrated on CALIB_DIR.\n"
                     "Provenance goes to OUT.json (a .pte has no metadata field). Check it with:\n"
                     "  treefuse parity --ref torch:W --cand executorch:m.pte --images DIR")
    add_export_options(parser, "executorch", ".pte file to write")
    parser.add_argument("--min-size", type=parse_size, default=(16, 16), metavar="HxW",
                        help="smallest input the program accepts (default 16x16)")
    parser.add_argument("--max-size", type=parse_size, default=(1088, 1920), metavar="HxW",
                        help="largest input the program accepts (default 1088x1920)")


def run(args: argparse.Namespace) -> int:
    from treefuse.cli.args import default_weights
    from treefuse.export.pt2e.executorch import export_executorch

    weights = args.weights or default_weights()
    export_executorch(weights, args.out, precision=args.precision, calibration=args.calib, min_hw=args.min_size,
                      max_hw=args.max_size)
    print(f"wrote {args.out} and {args.out.name}.json ({args.precision}, XNNPACK, inputs "
          f"{args.min_size[0]}x{args.min_size[1]} .. {args.max_size[0]}x{args.max_size[1]})")
    return 0
