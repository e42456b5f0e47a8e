"""Our ONNX export vs a plain `torch.onnx.export` vs PyTorch eager, interleaved in one run.

    python benchmarks/onnx_vs_eager.py [--weights W] [--size 512x512] [--iters 10] [--threads 2]

Prints the table and the two ratios the Foundation issue sets targets for:
ours / eager (target <= 0.25) and ours / plain export (target <= 0.9, aim 0.85).
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from treefuse.checkpoint import DEFAULT_WEIGHTS
from treefuse.cli.args import parse_size
from treefuse.export.onnx.exporter import export_onnx
from treefuse.runtimes.measurements.bench import format_table, measure_interleaved
from treefuse.device import device_fingerprint
from treefuse.runtimes.backends.registry import make_runner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--size", default="512x512")
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    height, width = parse_size(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        plain = export_onnx(args.weights, Path(tmp) / "plain.onnx", folded=False, simplify=False)
        ours = export_onnx(args.weights, Path(tmp) / "ours.onnx")
        specs = [f"torch:{args.weights}", f"onnx:{plain}", f"onnx:{ours}"]
        runners = [make_runner(spec, threads=args.threads).activate() for spec in specs]
        results = measure_interleaved(runners, (1, 3, height, width), warmup=2, iters=args.iters, progress=True)
    names = ["pytorch eager", "plain torch.onnx.export", "treefuse export"]
    for name, result in zip(names, results):
        result["name"] = name
    print(format_table(results))
    p50 = [r["latency_ms"]["p50"] for r in results]
    ratios = {"ours_over_eager": p50[2] / p50[0], "ours_over_plain_onnx": p50[2] / p50[1]}
    print(f"ours / eager       = {ratios['ours_over_eager']:.3f}  (target <= 0.25)")
    print(f"ours / plain ONNX  = {ratios['ours_over_plain_onnx']:.3f}  (target <= 0.90, aim 0.85)")
    if args.json:
        args.json.write_text(json.dumps({"size": [height, width], "results": results, "ratios": ratios,
                                         "device": device_fingerprint(args.threads)}, indent=2))


if __name__ == "__main__":
    main()
