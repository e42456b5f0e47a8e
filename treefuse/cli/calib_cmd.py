"""`treefuse calib build|verify|info`: calibration sets as versioned artifacts."""
from __future__ import annotations

import argparse
import json

from treefuse.cli.args import parse_size, positive_int


BUILD_DESCRIPTION = """\
Build a calibration set: --count crops of --size from the images in --images (one crop per image,
chosen and placed by --seed), as one hashed, versioned folder that every INT8 export reads for
its activation ranges (`treefuse export KIND --precision int8 --calib DIR`) and records by sha256.
Use frames like the camera's (the rain/ half of a paired folder is taken), not the pairs the
export is judged on."""
BUILD_EXAMPLES = """\
examples:
  treefuse calib build --images ../shared/data/rain100h-train50 --count 32 --size 256x256 --out calib/
  treefuse calib build --images CLEAN_FRAMES --synthetic-rain --count 16 --out calib-synth/
  treefuse calib verify calib/      # exit 0 intact, 1 changed
  treefuse export onnx --precision int8 --calib calib/ --paired-images PAIRS --out m.int8.onnx
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="calib_action", metavar="ACTION", required=True)
    build = actions.add_parser("build", help="crop real images (optionally add synthetic rain) into a set",
                               description=BUILD_DESCRIPTION, epilog=BUILD_EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    build.add_argument("--images", required=True, help="folder of images (a paired folder uses its rain/ half)")
    build.add_argument("--count", type=int, default=32, help="number of crops, one per image (default 32)")
    build.add_argument("--size", default="256x256", help="crop size HxW (default 256x256)")
    build.add_argument("--seed", type=positive_int("--seed", minimum=0), default=0, help="seed for image choice, crops and rain (default 0)")
    build.add_argument("--synthetic-rain", action="store_true", help="add synthetic rain to each (clean) crop")
    build.add_argument("--out", required=True, help="calibration set folder to write")
    verify = actions.add_parser("verify", help="exit 0 intact, 1 changed, 2 not a calibration set")
    verify.add_argument("calib_dir")
    info = actions.add_parser("info", help="what a calibration set holds")
    info.add_argument("calib_dir")
    info.add_argument("--json", action="store_true", help="print the full manifest as JSON")


def run(args: argparse.Namespace) -> int:
    if args.calib_action == "build":
        return _build(args)
    if args.calib_action == "verify":
        return _verify(args)
    return _info(args)


def _build(args: argparse.Namespace) -> int:
    from treefuse.calib.build import build_calibration_set
    from treefuse.calib.store import read_manifest
    from treefuse.runtimes.measurements.memory import check_input_fits

    check_input_fits((args.count, 3, *parse_size(args.size)), "--count and --size")
    out = build_calibration_set(args.images, args.out, args.count, parse_size(args.size), args.seed,
                                synthetic_rain=args.synthetic_rain, progress=True)
    manifest = read_manifest(out)
    print(f"calibration set {out}: {manifest['tensor']['shape']} sha256 {manifest['sha256']}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from treefuse.calib.store import verify_calibration_set

    manifest = verify_calibration_set(args.calib_dir)
    print(f"calibration set {args.calib_dir} intact: sha256 {manifest['sha256']}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from treefuse.calib.store import read_manifest

    manifest = read_manifest(args.calib_dir)
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
        return 0
    print(f"calibration set {args.calib_dir}")
    print(f"  sha256          {manifest['sha256']}")
    print(f"  images          {manifest['tensor']['shape']} float32 in [0, 1]")
    print(f"  seed            {manifest['seed']}   synthetic rain: {manifest['synthetic_rain']}")
    print(f"  sources         {len(manifest['sources'])} files, e.g. {manifest['sources'][0]['file']}")
    print(f"  created         {manifest.get('provenance', {}).get('created_utc', 'unknown')}")
    return 0
