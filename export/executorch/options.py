"""`treefuse export executorch`'s own options and help; what every format takes comes from the format table."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--layers", action="store_true",
                        help="also write OUT.layers.pte (with OUT.layers.pte.json): the same program with every layer "
                             "as an output, which `treefuse pack` carries so the bundle's `run.py --layers` can record "
                             "them on a device (XNNPACK keeps a normal program's layers to itself)")
    parser.epilog = ("examples:\n"
                     "  treefuse export executorch --out m.pte\n"
                     "  treefuse export executorch --precision int8 --calib calib/ --max-size 720x1280 --out m.int8.pte\n"
                     "  treefuse export executorch --precision int8 --calib calib/ --layers --out m.int8.pte   # + m.int8.layers.pte\n\n"
                     "Height and width are dynamic within --min-size .. --max-size (ExecuTorch plans memory for the\n"
                     "maximum). int8 is PyTorch's PT2E flow with the XNNPACK quantizer, calibrated on CALIB_DIR.\n"
                     "Provenance goes to OUT.json (a .pte has no metadata field). Check it on other images with:\n"
                     "  treefuse parity --ref torch:W --cand executorch:m.pte --images DIR")
