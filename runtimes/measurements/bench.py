"""Latency of several backends measured interleaved in one process, so ratios are fair."""
from __future__ import annotations

import time
from typing import Any

import numpy as np

from treefuse.progress import progress_bar
from treefuse.device import device_fingerprint
from treefuse.provenance import provenance
from treefuse.results import BenchResult
from treefuse.runtimes.backends.base import Runner

from treefuse.portable.timing import UNSTABLE_P90_OVER_P50, latency_summary  # noqa: F401 (what bundles run too)


def measure_interleaved(runners: list[Runner], shape: tuple[int, int, int, int], warmup: int = 2, iters: int = 10,
                        seed: int = 0, progress: bool = False) -> list[dict[str, Any]]:
    """Time each runner on the same input, taking turns every iteration (round robin)."""
    batch = np.random.default_rng(seed).random(shape, dtype=np.float32)
    for runner in runners:
        for _ in range(warmup):
            runner.infer(batch)
    times: list[list[float]] = [[] for _ in runners]
    rounds = progress_bar(range(iters), progress, desc="bench", unit="round")
    for i in rounds:
        # Rotate the starting runner so none is always measured right after another's cache pollution.
        order = [(i + k) % len(runners) for k in range(len(runners))]
        for index in order:
            start = time.perf_counter()
            runners[index].infer(batch)
            times[index].append(time.perf_counter() - start)
    results = [{**runner.describe(), **latency_summary(t, shape[0])} for runner, t in zip(runners, times)]
    first = results[0]["latency_ms"]["p50"]
    for result in results:
        result["ratio_to_first_p50"] = result["latency_ms"]["p50"] / first
    return results


def bench_result(runners: list[Runner], shape: tuple[int, int, int, int], warmup: int = 2, iters: int = 10,
                 threads: int | None = None, progress: bool = False) -> BenchResult:
    """The typed bench record: every runner's facts (artifact included) and latency, the device, provenance."""
    measured = measure_interleaved(runners, shape, warmup, iters, progress=progress)
    return BenchResult(device=device_fingerprint(threads), provenance=provenance(), size=list(shape[2:]),
                       batch=shape[0], warmup=warmup, iters=iters, backends=measured)


def format_table(results: list[dict[str, Any]]) -> str:
    """A fixed-width table of the results for stdout."""
    header = f"{'backend':<48} {'p50 ms':>9} {'p90 ms':>9} {'min ms':>9} {'img/s':>8} {'x first':>8}"
    lines = [header, "-" * len(header)]
    for r in results:
        spec = r["spec"]
        spec = spec if len(spec) <= 48 else "…" + spec[-47:]
        lat = r["latency_ms"]
        marks = (" unstable" if r.get("unstable") else "") + (" evaluator" if r.get("evaluator") == "mil" else "")
        lines.append(f"{spec:<48} {lat['p50']:>9.2f} {lat['p90']:>9.2f} {lat['min']:>9.2f} "
                     f"{r['throughput_img_per_s']:>8.2f} {r['ratio_to_first_p50']:>8.3f}{marks}")
    return "\n".join(lines)
