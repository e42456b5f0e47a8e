"""Hand-made result files for report tests: exact numbers, no measuring."""
import json
from pathlib import Path

from treefuse.files import sha256_file


def device_record(gpu=None):
    return {"cpu": {"model": "Test CPU", "logical_cores": 2, "isa_flags": ["avx2"]},
            "gpus": [{"name": gpu, "memory_gib": 80}] if gpu else [], "threads_used": 2, "versions": {"torch": "x"}}


def _cell(label, size, p50):
    return {"backend": label, "size": list(size), "latency_ms": {"p50": p50, "p90": p50 * 1.1, "p99": p50, "mean": p50,
            "min": p50}, "throughput_img_per_s": 1000 / p50, "iterations": 2, "ratio_to_first_p50": 1.0,
            "memory": {"peak_rss_mib": 300.0, "peak_rss_delta_mib": 5.0}}


def make_sweep(tmp_path: Path, name: str, weights: Path, onnx: Path, gpu=None, skip_onnx_large=False) -> Path:
    w, o = f"torch:{weights}", f"onnx:{onnx}"
    backends = [{"kind": "torch", "path": str(weights), "sha256": sha256_file(weights), "precision": "fp32",
                 "device": "cuda" if gpu else "cpu", "label": w},
                {"kind": "onnx", "path": str(onnx), "sha256": sha256_file(onnx), "precision": "fp32",
                 "source_sha256": sha256_file(weights), "label": o}]
    cells = [_cell(w, (256, 256), 40.0), _cell(o, (256, 256), 10.0), _cell(w, (512, 512), 160.0)]
    if not skip_onnx_large:
        cells.append(_cell(o, (512, 512), 41.0))
    parity = [{"backend": o, "reference": w, "output_psnr_db": {"min": 95.0, "mean": 99.0}, "passed": True,
               "failures": [], "task": {"ref_psnr_db": 27.0, "cand_psnr_db": 27.0, "delta_db": 0.0}}]
    data = {"kind": "treefuse-sweep", "format": "treefuse-sweep-v1", "backends": backends, "cells": cells,
            "parity": parity, "device": device_record(gpu), "provenance": {"created_utc": "2026-11-25T00:00:00+00:00"}}
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path
