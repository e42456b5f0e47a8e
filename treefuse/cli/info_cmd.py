"""`treefuse info`: what this installation is and what it can run."""
from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


def gather_info() -> dict:
    """Version, default weights, model size and which backends are importable."""
    from treefuse import __version__
    from treefuse.checkpoint import DEFAULT_WEIGHTS, load_weights
    from treefuse.model import count_parameters

    info: dict = {"version": __version__, "default_weights": str(DEFAULT_WEIGHTS)}
    if DEFAULT_WEIGHTS.is_file():
        loaded = load_weights(DEFAULT_WEIGHTS)
        info.update(params=count_parameters(loaded.model), config=loaded.config.to_dict(),
                    default_weights_sha256=loaded.sha256, default_weights_provenance=loaded.provenance)
    from treefuse.formats import FORMATS
    from treefuse.gates import DEFAULT_GATES

    formats = [fmt.to_json() for fmt in FORMATS]
    info.update(formats=formats, gates={name: gates.to_json() for name, gates in DEFAULT_GATES.items()},
                backends={f["kind"]: f["description"] for f in formats if f["available"]},
                missing_backends={f["kind"]: f["why_unavailable"] for f in formats if not f["available"]})
    import torch
    info["cuda_available"] = torch.cuda.is_available()
    return info


def run(args: argparse.Namespace) -> int:
    info = gather_info()
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    print(f"treefuse {info['version']}")
    print(f"default weights: {info['default_weights']}")
    if "params" in info:
        print(f"parameters:      {info['params']:,}  config: {json.dumps(info['config'])}")
    print("formats:")
    for fmt in info["formats"]:
        state = "available" if fmt["available"] else f"unavailable: {fmt['why_unavailable']}"
        print(f"  {fmt['kind']:<11} {fmt['suffix']:<13} {','.join(fmt['precisions']):<18} {state}")
    print(f"CUDA:            {'available' if info['cuda_available'] else 'not available'}")
    return 0
