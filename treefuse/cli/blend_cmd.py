"""`treefuse blend`: mix a fine-tune back toward its base weights (WiSE-FT), no training."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

EXAMPLES = """\
examples:
  treefuse blend --tuned runs/cam/final.safetensors --alpha 0.5 --out cam-blend.safetensors
  treefuse blend --base mine.safetensors --tuned runs/cam/final.safetensors --alpha 0.3 --out w.safetensors

Writes (1 - alpha) * base + alpha * tuned, tensor by tensor: alpha 0 is the base, 1 the fine-tune.
Use it when a fine-tune on a camera's own rain lost quality on the rain the base handled: score
a few alphas with `treefuse evaluate` on a split neither model trained on, and pick by a rule
fixed before you look. The output's provenance names both parents by sha256.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.cli.args import weights_path

    parser.epilog = EXAMPLES
    parser.add_argument("--base", type=weights_path, default=None, help="the weights fine-tuned from (default: the shipped ones)")
    parser.add_argument("--tuned", type=Path, required=True, help="the fine-tuned weights")
    parser.add_argument("--alpha", type=float, required=True, help="share of the tuned weights, 0..1")
    parser.add_argument("--out", type=Path, required=True, help="new .safetensors file")


def run(args: argparse.Namespace) -> int:
    from treefuse.checkpoint import DEFAULT_WEIGHTS
    from treefuse.train.blend import blend_weights

    summary = blend_weights(args.base or DEFAULT_WEIGHTS, args.tuned, args.alpha, args.out)
    print(json.dumps(summary, sort_keys=True))
    return 0
