"""Peak memory of one inference call: host RSS high-water mark, and CUDA allocations when on a GPU.

Host memory is the process's peak resident set (VmHWM). Linux lets a process reset that
mark by writing "5" to /proc/self/clear_refs, so each call gets its own peak; where the
reset is refused the number is `ru_maxrss`, a peak since process start, and says so.
The delta over the RSS before the call is a lower bound on what the call needed: memory
another backend in the same process freed can be reused. For exact per-backend figures,
`peak_memory_in_own_process` loads one backend in a fresh process and reads that process's
peak (what `treefuse benchmark` records), or sweep one backend per process and merge the
result files in `treefuse report`.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np

_STATUS, _CLEAR_REFS = Path("/proc/self/status"), Path("/proc/self/clear_refs")


def _status_kib(field: str) -> int | None:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return True
    except OSError:
        return False


def _cuda_reset() -> bool:
    try:
        import torch
    except ImportError:
        return False
    if not torch.cuda.is_available():
        return False
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    return True


def measure_peak_memory(call: Callable[[], Any]) -> dict[str, Any]:
    """Run `call` once and report its peak host RSS (MiB) and, on CUDA, peak allocated GPU memory."""
    rss_before = _status_kib("VmRSS")
    per_call = _reset_peak_rss()
    cuda = _cuda_reset()
    call()
    peak_kib = _status_kib("VmHWM") if per_call else None
    if peak_kib is None:
        peak_kib, per_call = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False
    result: dict[str, Any] = {"peak_rss_mib": peak_kib / 1024.0,
                              "rss_method": "VmHWM reset per call" if per_call else "ru_maxrss since process start"}
    if rss_before is not None:
        result["peak_rss_delta_mib"] = max(peak_kib - rss_before, 0) / 1024.0
    if cuda:
        import torch

        torch.cuda.synchronize()
        result["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return result


def available_memory_bytes() -> int | None:
    """Memory the kernel says a new allocation can use now (MemAvailable), or None where unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_input_fits(shape: tuple[int, ...], option: str) -> None:
    """Refuse a float32 input whose input and output tensors alone exceed free memory (a typo like 51200 for 5120)."""
    from treefuse.errors import TreefuseError

    needed, free = 2 * 4 * int(np.prod(shape, dtype=np.int64)), available_memory_bytes()
    if free is not None and needed > free:
        raise TreefuseError(f"{option}: {'x'.join(map(str, shape))} float32 images (and as many out) need "
                            f"{needed / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB free; use a smaller size")


OWN_PROCESS = "own process per backend: VmHWM since start (interpreter, libraries, model, one call)"


def peak_memory_in_own_process(spec: str, shape: tuple[int, ...], threads: int | None = None,
                               timeout_s: float = 900) -> dict[str, Any]:
    """Load one backend in a fresh Python process, run one call, and read that process's peak RSS (MiB).

    No other backend shares the process, so the figure is what a program running only this engine needs;
    `peak_rss_delta_mib` is the call's growth over the RSS once the model was loaded. A child that fails
    gives {"error": its last line}, never a made-up figure.
    """
    command = [sys.executable, "-m", "treefuse.runtimes.measurements.memory", spec, "x".join(map(str, shape)),
               str(threads or 0)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"error": f"no figure within {timeout_s:.0f} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        said = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        return {"error": said[:200]}
    return json.loads(lines[-1])


def _own_process_main(spec: str, shape_text: str, threads: int) -> None:
    """The child of peak_memory_in_own_process: one backend, one call, its peaks as one JSON line."""
    from treefuse.runtimes.backends.registry import make_runner

    shape = tuple(int(n) for n in shape_text.split("x"))
    batch = np.random.default_rng(0).random(shape, dtype=np.float32)
    with make_runner(spec, threads=threads or None) as runner:
        loaded_kib, load_peak_kib = _status_kib("VmRSS") or 0, _status_kib("VmHWM") or 0
        call_only = _reset_peak_rss()  # else the call's peak is the process's, loading included
        runner.infer(batch)
        call_peak_kib = _status_kib("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak_kib = max(load_peak_kib, call_peak_kib)
    print(json.dumps({"peak_rss_mib": peak_kib / 1024.0,
                      "peak_rss_delta_mib": max((call_peak_kib if call_only else peak_kib) - loaded_kib, 0) / 1024.0,
                      "rss_method": OWN_PROCESS}))


if __name__ == "__main__":  # python -m treefuse.runtimes.measurements.memory SPEC 1x3xHxW THREADS
    _own_process_main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
