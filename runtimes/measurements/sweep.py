"""Sweep: every backend at every resolution on one device, with parity against the first backend.

The result file is what `treefuse report` merges: one per device, carrying the device
fingerprint and the sha256 of every artifact it measured.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.device import device_fingerprint
from treefuse.errors import TreefuseError
from treefuse.provenance import provenance
from treefuse.results import SweepResult
from treefuse.progress import progress_bar
from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.measurements.bench import measure_interleaved
from treefuse.runtimes.measurements.memory import measure_peak_memory, peak_memory_in_own_process
from treefuse.runtimes.measurements.parity import ParityGates, run_parity

SWEEP_FORMAT = "treefuse-sweep-v1"


def sweep_size(runners: list[Runner], labels: list[str], size: tuple[int, int], warmup: int,
               iters: int, own_process_memory: bool = False, threads: int | None = None) -> list[dict[str, Any]]:
    """Latency (interleaved) and peak memory of every runner at one resolution.

    `own_process_memory`: each backend's peak memory read in a fresh process that loads it alone
    (a figure for that engine), instead of this process's, which holds every backend."""
    shape = (1, 3, *size)
    batch = np.random.default_rng(1).random(shape, dtype=np.float32)
    if own_process_memory:
        memories = [peak_memory_in_own_process(runner.spec, shape, threads) for runner in runners]
    else:  # memory first: each backend's first call at a new size is what grows its buffers
        memories = [measure_peak_memory(lambda: runner.infer(batch)) for runner in runners]
    timings = measure_interleaved(runners, shape, warmup=warmup, iters=iters)
    cells = []
    for label, timing, memory in zip(labels, timings, memories):
        cells.append({"backend": label, "size": list(size), "latency_ms": timing["latency_ms"],
                      "throughput_img_per_s": timing["throughput_img_per_s"], "iterations": timing["iterations"],
                      "ratio_to_first_p50": timing["ratio_to_first_p50"], "memory": memory,
                      "unstable": timing["unstable"]})
    return cells


class _RememberingRunner:
    """The reference backend, run once per image however many candidates are compared with it."""

    def __init__(self, runner: Runner) -> None:
        self.runner, self.spec, self.outputs = runner, runner.spec, {}

    def infer(self, batch: np.ndarray) -> np.ndarray:
        key = hashlib.sha256(batch.tobytes()).hexdigest() + str(batch.shape)
        if key not in self.outputs:
            self.outputs[key] = self.runner.infer(batch)
        return self.outputs[key]


def sweep_parity(runners: list[Runner], labels: list[str], images: list[tuple[Path, Path | None]],
                 gates: ParityGates | None = None) -> list[dict[str, Any]]:
    """Parity of each backend after the first against the first (whose task PSNR is the baseline).

    Without `gates`, each candidate is judged by the default gates of its own precision.
    """
    rows = []
    reference = _RememberingRunner(runners[0])
    for candidate, label in zip(runners[1:], labels[1:]):
        result = run_parity(reference, candidate, images, gates)
        rows.append({"backend": label, "reference": labels[0], "output_psnr_db": result["output_psnr_db"],
                     "task": result.get("task"), "worst_image": result.get("worst_image"),
                     "passed": result["passed"], "failures": result["failures"], "gates": result["gates"],
                     "non_finite_images": result["non_finite_images"],
                     "metric": result["metric"], "image_count": len(images)})
    return rows


def run_sweep(runners: list[Runner], sizes: list[tuple[int, int]], warmup: int = 2, iters: int = 10,
              images: list[tuple[Path, Path | None]] | None = None, labels: list[str] | None = None,
              progress: bool = False, threads: int | None = None, images_dir: str | None = None,
              own_process_memory: bool = False) -> SweepResult:
    """Measure all runners at all sizes (and parity when images are given); runners must be active.

    `labels` name the backends in the result (default: KIND:PATH); they must be unique.
    """
    labels = labels or [runner.spec for runner in runners]
    if len(set(labels)) != len(labels):
        raise TreefuseError("the same backend is named twice; give each --backend once (add ?options to vary it)")
    steps = progress_bar(list(sizes), progress, desc="sweep", unit="size")
    cells = [cell for size in steps
             for cell in sweep_size(runners, labels, size, warmup, iters, own_process_memory, threads)]
    return SweepResult(device=device_fingerprint(threads), provenance=provenance(), format=SWEEP_FORMAT,
                       sizes=[list(s) for s in sizes], warmup=warmup, iters=iters,
                       backends=[{**runner.describe(), "label": label} for runner, label in zip(runners, labels)],
                       cells=cells, parity=sweep_parity(runners, labels, images) if images else [],
                       images_dir=images_dir)
