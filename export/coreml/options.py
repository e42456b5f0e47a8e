"""`treefuse export coreml`'s own options: the FP16 range check before a package computing in FP16."""
from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("examples:\n"
                     "  treefuse export coreml --precision fp16 --out m.mlpackage\n"
                     "  treefuse export coreml --precision w8a8 --calib calib/ --min-size 240x320 --max-size 1080x1920 "
                     "--out m.mlpackage\n\n"
                     "fp32/fp16: float weights and compute; w8: 8-bit weights, FP16 compute; w8a8: 8-bit weights\n"
                     "and activations calibrated on a treefuse calibration set (iOS17 target). Check the result on\n"
                     "Linux with: treefuse parity --ref torch:W --cand coreml:m.mlpackage --images DIR")
    parser.add_argument("--check-fp16", type=Path, default=None, metavar="CALIB_DIR",
                        help="FP16-compute precisions: measure layer ranges on this calibration set against FP16 "
                             "first and write OUT.fp16-ranges.json beside the package")
    parser.add_argument("--strict-fp16", action="store_true",
                        help="refuse (exit 1) when a layer would overflow FP16 or flush its small values")
