"""`treefuse export rknn`'s own options and help; what every format takes comes from the format table."""
from __future__ import annotations

import argparse

from treefuse.export.rknn.exporter import ALGORITHMS, PLATFORMS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--platform", choices=tuple(PLATFORMS), default="rk3588",
                        help="the Rockchip SoC: " + "; ".join(f"{name}: {chips}" for name, chips in PLATFORMS.items()))
    parser.add_argument("--algorithm", choices=ALGORITHMS, default="normal",
                        help="int8 with --calib: the toolkit's calibrator (default normal: min/max)")
    parser.add_argument("--float16-layers", type=_count, default=0, metavar="N",
                        help="int8 with --calib: keep the N layers the toolkit's accuracy analysis blames most in "
                             "float16 (its hybrid quantization), when INT8 misses its gate")
    parser.add_argument("--layer-report", action="store_true",
                        help="int8 with --calib: write the toolkit's per-layer accuracy analysis (cosine vs float, "
                             "on the simulator) to OUT.layers.json")
    parser.epilog = ("examples:\n"
                     "  treefuse export rknn --platform rk3588 --out m.rknn                       # fp16\n"
                     "  treefuse export rknn --precision int8 --calib calib/ --layer-report --out m.int8.rknn\n"
                     "  treefuse export rknn --precision int8 --calib calib/ --float16-layers 4 --out m.int8.rknn\n"
                     "  treefuse export rknn --precision int8 --qat RUN --out m.int8.rknn   # or --qat m.int8.onnx\n\n"
                     "Converted by rknn-toolkit2 in its own venv (`make install-rknn`; TREEFUSE_RKNN_PYTHON names\n"
                     "another), at the fixed --size (1x3xHxW: the NPU compiles static shapes); input and output stay\n"
                     "float32 at the API. The export is rebuilt on the toolkit's x86 simulator and judged before it is\n"
                     "written; beside OUT go OUT.json (provenance) and OUT.sim/ (what the simulator rebuilds from).\n"
                     "--qat takes a `treefuse qat --target onnx-int8` run, or the QDQ model `treefuse export onnx\n"
                     "--precision int8 --qat RUN` wrote. On a board: treefuse pack rknn:m.rknn ... (docs/rknn.md)")


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value
