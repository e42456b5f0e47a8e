"""`treefuse export litert`: weights -> a LiteRT model (.tflite) through litert-torch, fp32, fp16 or int8."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.cli.args import add_export_options, parse_size

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = ("examples:\n"
                     "  treefuse export litert --out m.tflite\n"
                     "  treefuse export litert --precision int8 --calib calib/ --out m.int8.tflite\n\n"
                     "Converted with litert-torch, which lives in its own venv (`make install-litert`: it would\n"
                     "downgrade typing-extensions here); set TREEFUSE_LITERT_PYTHON to use another one. The model is\n"
                     "converted at --size but runs at any H x W (the runner resizes its input). fp16 stores FP16\n"
                     "weights; int8 quantizes weights and activations (PT2E, calibrated on CALIB_DIR). Provenance goes\n"
                     "to OUT.json. Check it with: treefuse parity --ref torch:W --cand litert:m.tflite --images DIR")
    add_export_options(parser, "litert", ".tflite file to write")
    parser.add_argument("--size", type=parse_size, default=(256, 256), metavar="HxW",
                        help="input size the model is converted at (default 256x256; other sizes still run)")


def run(args: argparse.Namespace) -> int:
    from treefuse.cli.args import default_weights
    from treefuse.export.pt2e.litert import export_litert

    weights = args.weights or default_weights()
    export_litert(weights, args.out, precision=args.precision, calibration=args.calib, size=args.size)
    print(f"wrote {args.out} and {args.out.name}.json ({args.precision}, XNNPACK)")
    return 0
