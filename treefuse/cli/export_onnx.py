"""`treefuse export onnx`: weights -> a folded, simplified, checked ONNX model."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("example:\n  treefuse export onnx --weights w.safetensors --out m.onnx\n\n"
                     "The within-block first-level fuses are folded into the dilated convolutions (exact),\n"
                     "batch/height/width are dynamic, and the model carries its config and source hash.")
    parser.add_argument("--weights", type=Path, default=None, help="treefuse weights (default: the shipped ones)")
    parser.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    parser.add_argument("--no-fold", action="store_true", help="export the network as trained, without the fold")


def run(args: argparse.Namespace) -> int:
    from treefuse.cli.args import default_weights
    from treefuse.export.onnx_export import export_onnx

    weights = args.weights or default_weights()
    export_onnx(weights, args.out, opset=args.opset, folded=not args.no_fold)
    print(f"wrote {args.out}")
    return 0
