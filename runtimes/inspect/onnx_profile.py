"""ONNX Runtime's own session profiler: one kernel-time event per node per run, on the optimised graph."""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.runtimes.backends.base import Runner

KERNEL_SUFFIX = "_kernel_time"


def profile(runner: Runner, batch: np.ndarray, runs: int) -> tuple[str, list[dict[str, Any]]]:
    """('ONNX Runtime session profiling', one row per node per profiled run) for an active ONNX Runtime runner."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="treefuse-ort-profile-") as folder:
        options = runner.session_options()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        session = ort.InferenceSession(str(runner.path), options, providers=runner.providers)
        feed = {runner.input_name: batch.astype(np.float16) if runner.input_is_fp16 else batch}
        for _ in range(runs + 1):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    warm = starts[1] if len(starts) > 1 else 0  # the first run (allocations, first-touch) is not counted
    return "ONNX Runtime session profiling", [
        {"node": e["name"][:-len(KERNEL_SUFFIX)], "op_type": e["args"].get("op_name", "?"), "ms": e["dur"] / 1000.0,
         "provider": e["args"].get("provider", "")}
        for e in events if e.get("cat") == "Node" and e["name"].endswith(KERNEL_SUFFIX) and e["ts"] >= warm]
