"""OpenVINO's performance counters: one row per executed node of the compiled CPU graph, with its kernel."""
from __future__ import annotations

from typing import Any

import numpy as np

from treefuse.runtimes.backends.base import Runner


def profile(runner: Runner, batch: np.ndarray, runs: int) -> tuple[str, list[dict[str, Any]]]:
    """('OpenVINO performance counters', one row per executed node per run) for an active OpenVINO runner."""
    compiled = runner.compile_for(runner.model, batch.shape, PERF_COUNT=True)
    request = compiled.create_infer_request()
    request.infer(batch)  # warm-up: not counted (counters are per request and reset by each infer)
    rows = []
    for _ in range(runs):
        request.infer(batch)
        rows += [{"node": info.node_name, "op_type": info.node_type, "ms": info.real_time.total_seconds() * 1000,
                  "kernel": info.exec_type}
                 for info in request.get_profiling_info() if info.status.name == "EXECUTED"]
    return "OpenVINO performance counters", rows
