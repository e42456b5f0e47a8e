"""`treefuse derain`: derain images and videos with any backend."""
from __future__ import annotations

import argparse
from pathlib import Path

from treefuse.cli.args import add_backend_option, positive_int

EXAMPLES = """\
examples:
  treefuse derain --backend onnx:m.onnx street.png folder/ --out derained/
  treefuse derain dashcam.mp4 --tile 512 --out derained/        # any resolution within bounded memory

Outputs keep their input names; an input is never overwritten. 16-bit PNGs stay 16-bit, alpha
is kept, grayscale stays grayscale, EXIF orientation is applied. Videos (.mp4 .mov .mkv .avi
.webm, needs the video extra) keep their frame rate, timestamps and audio.
--tile N runs N x N tiles that overlap by --overlap pixels. By default the overlap is exact for
the artifact's own model (read from its metadata): the shipped model sees {radius} px around each
pixel, so it gets {overlap} px (>= {exact}) and tiles match the whole-image output.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.runtimes.applications.tiling import DEFAULT_OVERLAP, RECEPTIVE_RADIUS

    parser.epilog = EXAMPLES.format(overlap=DEFAULT_OVERLAP, radius=RECEPTIVE_RADIUS, exact=2 * RECEPTIVE_RADIUS + 1)
    add_backend_option(parser)  # default: the shipped weights on PyTorch
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image or video files, or folders of them")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the derained files")
    parser.add_argument("--tile", type=int, default=None, metavar="N", help="derain in N x N tiles (default: whole)")
    parser.add_argument("--overlap", type=int, default=None, metavar="PX",
                        help="pixels adjacent tiles share (default: exact for the artifact's model)")
    parser.add_argument("--threads", type=positive_int("--threads"), default=None, help="CPU threads")


def run(args: argparse.Namespace) -> int:
    from treefuse.cli.args import default_weights
    from treefuse.runtimes.applications.derain import collect_inputs, derain_files
    from treefuse.runtimes.backends.registry import make_runner
    from treefuse.runtimes.applications.tiling import check_tiling

    if args.tile is not None and args.overlap is not None:
        check_tiling(args.tile, args.overlap)
    files = collect_inputs(args.inputs)
    spec = args.backend or f"torch:{default_weights()}"
    with make_runner(spec, threads=args.threads) as runner:
        written = derain_files(runner, files, args.out, progress=True, tile=args.tile, overlap=args.overlap)
    print(f"wrote {len(written)} file(s) to {args.out}")
    return 0
