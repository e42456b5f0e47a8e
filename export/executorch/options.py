"""`treefuse export executorch`'s own help; its options all come from the format table."""
from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("examples:\n"
                     "  treefuse export executorch --out m.pte\n"
                     "  treefuse export executorch --precision int8 --calib calib/ --max-size 720x1280 --out m.int8.pte\n\n"
                     "Height and width are dynamic within --min-size .. --max-size (ExecuTorch plans memory for the\n"
                     "maximum). int8 is PyTorch's PT2E flow with the XNNPACK quantizer, calibrated on CALIB_DIR.\n"
                     "Provenance goes to OUT.json (a .pte has no metadata field). Check it on other images with:\n"
                     "  treefuse parity --ref torch:W --cand executorch:m.pte --images DIR")
