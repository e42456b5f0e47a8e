"""`treefuse info`: what this installation is and what it can run."""
from __future__ import annotations

import argparse
import importlib.util
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")


# backend kind -> (python module it needs, pip extra that installs it)
BACKEND_REQUIREMENTS = {"torch": ("torch", "(core)"), "onnx": ("onnxruntime", "(core)"),
                        "coreml": ("coremltools", "treefuse[coreml]"), "trt": ("tensorrt", "treefuse[tensorrt]"),
                        "openvino": ("openvino", "openvino")}


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
    backends, missing = {}, {}
    for kind, (module, extra) in BACKEND_REQUIREMENTS.items():
        if importlib.util.find_spec(module) is not None:
            backends[kind] = module
        else:
            missing[kind] = f"pip install {extra}" if extra != "(core)" else "reinstall treefuse"
    info.update(backends=backends, missing_backends=missing)
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
    print(f"backends:        {', '.join(info['backends'])}")
    for kind, fix in info["missing_backends"].items():
        print(f"missing:         {kind} ({fix})")
    print(f"CUDA:            {'available' if info['cuda_available'] else 'not available'}")
    return 0
