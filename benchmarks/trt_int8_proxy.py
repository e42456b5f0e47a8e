"""INT8 quality before a GPU: the TensorRT-target QDQ model executed by ONNX Runtime on the CPU (a proxy).

Runs the FP32 model and each INT8 model (TensorRT target, ONNX Runtime target) on a paired folder
and writes one JSON: output PSNR vs FP32 (min/mean over images) and task PSNR vs the clean images,
each INT8 model run twice: with ONNX Runtime's integer kernels (full graph optimisation) and with
the graph unfused, where every Q/DQ is computed as written and the convolutions run in float: that
is the QDQ arithmetic TensorRT implements (INT8 products, exact integer accumulation), without any
CPU kernel's shortcuts. Neither is TensorRT: the JSON says so in every entry. On a GPU, replace it
with `treefuse parity --ref onnx:FP32 --cand trt:ENGINE --images PAIRS`.

    .venv/bin/python benchmarks/trt_int8_proxy.py --fp32 m.onnx --model tensorrt=m.int8.trt.onnx \
        --model onnxruntime=m.int8.ort.onnx --images ../shared/data/heavy-rain-sample5 --json proxy.json
"""
from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import numpy as np

PROXY = "ORT proxy, not TensorRT: ONNX Runtime CPU executing the QDQ model"


def session(path: Path, optimized: bool):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = (ort.GraphOptimizationLevel.ORT_ENABLE_ALL if optimized
                                        else ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def outputs(path: Path, rainy: list[np.ndarray], optimized: bool = True) -> list[np.ndarray]:
    run = session(path, optimized)
    name = run.get_inputs()[0].name
    return [np.clip(run.run(None, {name: batch})[0][0].transpose(1, 2, 0), 0, 1) for batch in rainy]


def scores(candidate: list[np.ndarray], fp32: list[np.ndarray], clean: list[np.ndarray]) -> dict:
    from treefuse.metrics import calculate_psnr

    vs_fp32 = [calculate_psnr(c, f) for c, f in zip(candidate, fp32)]
    task = [calculate_psnr(c, t) for c, t in zip(candidate, clean)]
    fp32_task = [calculate_psnr(f, t) for f, t in zip(fp32, clean)]
    return {"output_psnr_vs_fp32_db": {"min": min(vs_fp32), "mean": float(np.mean(vs_fp32)), "per_image": vs_fp32},
            "task_psnr_db": float(np.mean(task)), "fp32_task_psnr_db": float(np.mean(fp32_task)),
            "task_drop_db": float(np.mean(fp32_task) - np.mean(task))}


def cpu_flags() -> list[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    return sorted(set(re.findall(r"\b(avx512[a-z_0-9]*|amx[a-z_0-9]*|avx2|avx_vnni)\b", text)))


def main() -> None:
    from treefuse.files import sha256_file, write_json_atomic
    from treefuse.images import paired_images, read_image, to_batch
    from treefuse.provenance import provenance

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fp32", type=Path, required=True)
    parser.add_argument("--model", action="append", required=True, metavar="TARGET=PATH")
    parser.add_argument("--images", type=Path, required=True, help="paired folder the weights never trained on")
    parser.add_argument("--goal-drop-db", type=float, default=0.1)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args()
    pairs = paired_images(args.images)
    rainy = [to_batch(read_image(r)) for r, _ in pairs]
    clean = [read_image(c) for _, c in pairs]
    fp32 = outputs(args.fp32, rainy)
    targets = {}
    for spec in args.model:
        target, path = spec.split("=", 1)
        results = {mode: {"executed_by": f"{PROXY} ({mode})", **scores(outputs(Path(path), rainy, optimized), fp32, clean)}
                   for mode, optimized in (("ort-integer-kernels", True), ("qdq-unfused-float-conv", False))}
        targets[target] = {"model": path, "model_sha256": sha256_file(path), "proxy": PROXY, **results}
        for mode, result in results.items():
            print(f"{target:12s} {mode:24s} output PSNR vs FP32 min {result['output_psnr_vs_fp32_db']['min']:.2f} "
                  f"mean {result['output_psnr_vs_fp32_db']['mean']:.2f} dB | task drop {result['task_drop_db']:+.3f} dB")
    git = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    write_json_atomic(args.json, {
        "kind": "treefuse-tensorrt-int8-proxy", "proxy": PROXY, "is_tensorrt": False,
        "replace_on_gpu_with": "treefuse parity --ref onnx:FP32 --cand trt:ENGINE --images PAIRS --json ...",
        "fp32": str(args.fp32), "fp32_sha256": sha256_file(args.fp32), "images": str(args.images),
        "pairs": len(pairs), "metric": "mean RGB PSNR (dB), full images, outputs clipped to [0, 1]",
        "goal": {"max_task_drop_db": args.goal_drop_db}, "targets": targets, "cpu_flags": cpu_flags(),
        "git_commit": git, "provenance": provenance()})


if __name__ == "__main__":
    main()
