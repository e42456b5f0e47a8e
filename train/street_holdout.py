"""The held-out street-rain validation set: 8 Urban100 photos training never sees, fixed seed.

Every fifth Urban100 photo of ../shared/data/clean (the 3rd, 8th, ... of the 40, sorted) is
held out; `train/configs/street.yaml` excludes the same files from training
(`data.synthetic_exclude`), and a test checks the two lists agree. The set is the centre
320x320 window of each photo (the depth stand-in still follows the whole frame), street preset,
seed 14: `python -m treefuse.train.street_holdout --out DIR` rebuilds it byte for byte.

`--selection` builds `street-select8` instead: the first of every five (photos training does see
as backgrounds, never with this rain), seed 99, for choosing among candidates (a blend's alpha)
without looking at the held-out set.
"""
from __future__ import annotations

import argparse
import json

from treefuse.errors import TreefuseError

from treefuse.data import street_split
from treefuse.data.synth_pairs import synth_folder

SOURCE_DIR = "../shared/data/clean/Urban100"
HELD_OUT = ("img_006.png", "img_019.png", "img_031.png", "img_044.png",
            "img_057.png", "img_070.png", "img_082.png", "img_095.png")
SELECTION = ("img_001.png", "img_014.png", "img_026.png", "img_039.png",
             "img_052.png", "img_064.png", "img_077.png", "img_090.png")
PRESET, SEED, SELECTION_SEED, CROP = "street-flat", 14, 99, 320  # street rain without a depth estimate
NAME = "street-holdout8:urban100-seed14-crop320"


def build(out: str, source_dir: str = SOURCE_DIR, selection: bool = False, seed: int | None = None) -> dict:
    """Render the held-out set (or the selection set) into `out` (a paired folder); `seed` for fresh rain."""
    names, default_seed = (SELECTION, SELECTION_SEED) if selection else (HELD_OUT, SEED)
    return synth_folder(source_dir, out, preset=PRESET, seed=default_seed if seed is None else seed, crop=CROP,
                        names=list(names))


STREET_SEEDS = {"selection": 23, "judge": 2023}  # fixed before anything was scored
STREET_RENDERERS = ("depth", "judge", "particle")  # training's renderer, then the two judges


def street_set_name(split: str, renderer: str, seed: int) -> str:
    """The name a street set is reported under, e.g. street-judge14:judge-seed2023-640."""
    count = len(street_split.split_names(split))
    return f"street-{split}{count}:{renderer}-seed{seed}-{street_split.FRAME_LONG_SIDE}"


def build_street(out: str, split: str, renderer: str = "depth", source_dir: str = street_split.STREET_DIR,
                 seed: int | None = None) -> dict:
    """Render a street-clean split (selection or judge) with the training renderer or a judge's."""
    seed = STREET_SEEDS[split] if seed is None else seed
    names = list(street_split.split_names(split))
    if renderer == "depth":
        summary = synth_folder(source_dir, out, preset="street", seed=seed, names=names,
                               long_side=street_split.FRAME_LONG_SIDE)
    elif renderer == "judge":
        from treefuse.data.judge_rain import judge_folder

        summary = judge_folder(source_dir, out, seed=seed, names=names, long_side=street_split.FRAME_LONG_SIDE)
    elif renderer == "particle":
        from treefuse.data.particle_rain import particle_folder

        summary = particle_folder(source_dir, out, seed=seed, names=names, long_side=street_split.FRAME_LONG_SIDE)
    else:
        raise TreefuseError(f"unknown renderer {renderer!r}; choose one of {list(STREET_RENDERERS)}")
    return {**summary, "name": street_set_name(split, renderer, seed)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="paired folder to write (rain/ + clean/)")
    parser.add_argument("--source", default=SOURCE_DIR, help="the Urban100 folder")
    parser.add_argument("--selection", action="store_true", help="build street-select8 (for choosing, not scoring)")
    parser.add_argument("--seed", type=int, default=None, help="fresh rain on the same photos (default 14, or 99)")
    parser.add_argument("--street", choices=sorted(street_split.SPLITS.keys() - {"train"}), default=None,
                        help="build a street-clean split instead (data/street_split.py), from --source")
    parser.add_argument("--renderer", choices=STREET_RENDERERS, default="depth",
                        help="with --street: the training renderer (depth), the second (judge: JORDER's "
                             "accumulation model) or the third (particle: Garg & Nayar drops)")
    args = parser.parse_args()
    if args.street:
        source = street_split.STREET_DIR if args.source == SOURCE_DIR else args.source
        print(json.dumps(build_street(args.out, args.street, args.renderer, source, args.seed)))
        return
    print(json.dumps(build(args.out, args.source, args.selection, args.seed)))


if __name__ == "__main__":
    main()
