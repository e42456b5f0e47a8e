"""`treefuse synth`: render synthetic street rain onto a folder of clean frames, as training pairs."""
from __future__ import annotations

import argparse
import json

EXAMPLES = """\
examples:
  treefuse synth --images frames/ --out pairs/                      # one rainy rendering per frame
  treefuse synth --images frames/ --out pairs/ --count 500 --seed 3 # 500 pairs, frames reused with new rain
  treefuse synth --images frames/ --out val/ --crop 320 --seed 99   # centre 320x320 windows
  treefuse synth --images frames/ --out pairs/ --preset my_rain.yaml
  treefuse synth --images frames/ --out pairs/ --preset street-flat  # streaks and veil without a depth estimate

The street preset (data/rain_presets/street.yaml) estimates each frame's depth (sky, horizon,
ground plane, facades) and draws a veil exp(-beta*depth) in the sky's colour, streaks by depth
layer, and a randomized camera (motion blur, exposure, noise, JPEG); docs/training.md says how
to tune its ranges to a camera.

--out gets rain/ and clean/ (same file names, NNNN_frame.png) and synth.json (preset, seed,
every pair's rain parameters and depth summary, sha256 of every frame); it is written atomically and only
replaces an earlier synth output. Same frames, preset and seed: identical pairs.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("--images", required=True, metavar="CLEAN_DIR", help="folder of clean frames (not recursive)")
    parser.add_argument("--out", required=True, metavar="PAIRED_DIR", help="new folder for rain/ + clean/ pairs")
    parser.add_argument("--preset", default="street", help="rain preset: a shipped name (street) or a YAML of ranges")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--count", type=int, default=None, metavar="N", help="pairs to render (default: one per frame)")
    parser.add_argument("--crop", type=int, default=0, metavar="PX", help="centre square window of each frame (0: whole)")


def run(args: argparse.Namespace) -> int:
    from treefuse.data.synth_pairs import synth_folder

    summary = synth_folder(args.images, args.out, preset=args.preset, seed=args.seed, count=args.count, crop=args.crop)
    print(json.dumps(summary, sort_keys=True))
    return 0
