"""`treefuse derain`: derain images with any backend."""
from __future__ import annotations

import argparse
from pathlib import Path

from treefuse.cli.args import add_backend_option


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = ("example:\n  treefuse derain --backend onnx:m.onnx street.png folder/ --out derained/\n\n"
                     "Outputs keep their input names; an input is never overwritten.")
    add_backend_option(parser)  # default: the shipped weights on PyTorch
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the derained images")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads")


def run(args: argparse.Namespace) -> int:
    from treefuse.cli.args import default_weights
    from treefuse.runtimes.derain import collect_inputs, derain_files
    from treefuse.runtimes.registry import make_runner

    files = collect_inputs(args.inputs)
    spec = args.backend or f"torch:{default_weights()}"
    with make_runner(spec, threads=args.threads) as runner:
        written = derain_files(runner, files, args.out, progress=len(files) > 1)
    print(f"wrote {len(written)} image(s) to {args.out}")
    return 0
