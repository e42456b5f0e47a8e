"""`make demo`: the main job end to end on a laptop CPU in a few minutes.

Shipped weights -> ONNX -> parity (PyTorch vs ONNX Runtime) on real rainy pairs when
../shared/data is present, else on self-made synthetic rain -> latency of both ->
JSON results, a short table, and one derained example image.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

SHARED_PAIRS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "heavy-rain-sample5"


def make_synthetic_pairs(out_dir: Path, count: int = 4, seed: int = 0) -> Path:
    """A paired folder of smooth self-made scenes under seeded heavy synthetic rain."""
    from treefuse.images import write_image
    from treefuse.data.synthetic_rain import RainParams, add_synthetic_rain

    rng = np.random.default_rng(seed)
    for index in range(count):
        yy, xx = np.mgrid[0:240, 0:320] / 320.0
        phase = rng.uniform(0, 6)
        clean = np.stack([0.35 + 0.3 * np.sin(5 * xx + phase), 0.3 + 0.4 * yy,
                          0.45 + 0.25 * np.cos(7 * yy * xx + phase)], axis=-1).astype(np.float32)
        rainy, _ = add_synthetic_rain(clean, rng, RainParams.sample(rng, heavy=True))
        write_image(out_dir / "rain" / f"{index:03d}.png", rainy)
        write_image(out_dir / "clean" / f"{index:03d}.png", clean)
    return out_dir


def step(title: str, argv: list[str]) -> int:
    from treefuse.cli import main

    print(f"\n== {title}\n$ treefuse {' '.join(argv)}", flush=True)
    return main(argv)


def run_demo(out: Path) -> int:
    from treefuse.checkpoint import DEFAULT_WEIGHTS

    out.mkdir(parents=True, exist_ok=True)
    weights = DEFAULT_WEIGHTS
    if SHARED_PAIRS.is_dir():
        pairs, source = SHARED_PAIRS, "real heavy-rain pairs from ../shared/data"
    else:
        pairs, source = make_synthetic_pairs(out / "synthetic_pairs"), "self-made synthetic rain (no ../shared/data)"
    print(f"images: {pairs} ({source})")
    onnx_path = out / "treefuse.onnx"
    steps = [
        ("info", ["info"]),
        ("export ONNX (folded, simplified, checked)", ["export", "onnx", "--weights", str(weights), "--out", str(onnx_path)]),
        ("parity: PyTorch vs ONNX Runtime", ["parity", "--ref", f"torch:{weights}", "--cand", f"onnx:{onnx_path}",
                                             "--images", str(pairs), "--json", str(out / "parity.json")]),
        ("quality against ground truth", ["evaluate", "--backend", f"onnx:{onnx_path}", "--data", str(pairs),
                                          "--json", str(out / "evaluate.json")]),
        ("latency, interleaved", ["bench", "--backend", f"torch:{weights}", "--backend", f"onnx:{onnx_path}",
                                  "--size", "256x256", "--iters", "5", "--json", str(out / "bench.json")]),
        ("derain an example", ["derain", "--backend", f"onnx:{onnx_path}", str(sorted((pairs / "rain").iterdir())[0]),
                               "--out", str(out / "derained")]),
    ]
    for title, argv in steps:
        code = step(title, argv)
        if code != 0:
            print(f"demo step '{title}' failed with exit {code}", file=sys.stderr)
            return code
    print(f"\ndemo done: results in {out}/ (parity.json, evaluate.json, bench.json, derained/)")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/demo"))
    return run_demo(parser.parse_args().out)


if __name__ == "__main__":
    sys.exit(main())
