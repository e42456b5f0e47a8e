"""`treefuse pack`: a device bundle (artifact, golden inputs and outputs, gates, manifest) to run on the camera."""
from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """\
examples:
  treefuse pack onnx:m.int8.onnx --images ../shared/data/heavy-rain-sample5 --out bundles/onnx-int8
  treefuse pack executorch:m.pte --images pairs/ --sizes 64x64,128x128 --count 3 --out bundles/et-fp32
  python bundles/onnx-int8/run.py --json onnx-int8.json     # on the device: no torch, no treefuse

--images is a paired folder (rain/ and clean/, same names: task PSNR is gated too) or a folder
of images. Each image is center-cropped to each of --sizes (HxW; 'full' keeps the whole image);
keep crops small for emulated devices. The reference outputs come from the FP32 PyTorch
weights the artifact was made from (the shipped weights by default; --ref names others).
The bundle holds the gates of the artifact's precision and every file's sha256.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.cli.args import add_backend_option, positive_int

    parser.epilog = EXAMPLES
    parser.add_argument("candidate", metavar="KIND:PATH", help="the artifact: onnx:, executorch: or litert:")
    parser.add_argument("--images", required=True, type=Path, metavar="DIR", help="paired folder or image folder")
    parser.add_argument("--out", required=True, type=Path, metavar="BUNDLE", help="the bundle folder to write")
    parser.add_argument("--sizes", default="96x96", metavar="HxW,...", help="crop sizes (default 96x96; 'full' too)")
    parser.add_argument("--count", type=positive_int("--count"), default=None, help="use the first N images only")
    add_backend_option(parser, "--ref", required=False)
    parser.add_argument("--y-channel", action="store_true", help="score on BT.601 luma instead of RGB")
    parser.add_argument("--bench-size", default="frame", metavar="HxW",
                        help="size latency is timed at (default 'frame': the largest image's own size, as the camera "
                             "sends it; give a crop size for slow emulated devices)")


def parse_sizes(text: str) -> tuple[tuple[int, int] | None, ...]:
    """'96x96,128x64' (HxW) or 'full' -> ((H, W) | None, ...)."""
    from treefuse.cli.args import parse_size
    from treefuse.errors import TreefuseError

    items = [part.strip() for part in text.split(",") if part.strip()]
    if not items:
        raise TreefuseError("--sizes is empty; give e.g. 96x96 or 96x96,full")
    return tuple(None if item.lower() == "full" else parse_size(item) for item in items)


def run(args: argparse.Namespace) -> int:
    from treefuse.bundle.pack import PackRequest, pack
    from treefuse.cli.args import parse_size

    bench_size = None if args.bench_size.lower() == "frame" else parse_size(args.bench_size)
    packed = pack(PackRequest(args.candidate, args.images, args.out, parse_sizes(args.sizes), args.ref,
                              args.count, args.y_channel, bench_size))
    print(f"wrote {packed.path}: {packed.samples} golden samples, {packed.files} files, "
          f"{packed.size_bytes / 1e6:.2f} MB, manifest sha256 {packed.manifest_sha256[:16]}")
    print(f"on the device: python {packed.path}/run.py --json result.json")
    return 0
