"""A fingerprint of the machine a measurement ran on, recorded once per result file."""
from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

from treefuse.provenance import tool_versions

_INTERESTING_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni", "fma")


def cpu_flags_text() -> str:
    """The CPU's speed-relevant flags in one line, to print beside every speed figure."""
    facts = cpu_facts()
    return f"{facts['model']} ({', '.join(facts['isa_flags']) or 'no AVX2'})"


def cpu_facts() -> dict[str, Any]:
    """CPU model and the instruction-set flags that decide which precision is fast."""
    model, flags = platform.processor() or "unknown", set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model in ("unknown", platform.machine()):
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    return {"model": model, "logical_cores": os.cpu_count(),
            "isa_flags": [f for f in _INTERESTING_FLAGS if f in flags]}


def gpu_facts() -> list[dict[str, Any]]:
    """Visible CUDA devices (empty when torch has no CUDA)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    return [{"name": torch.cuda.get_device_name(i),
             "memory_gib": round(torch.cuda.get_device_properties(i).total_memory / 2**30, 1)}
            for i in range(torch.cuda.device_count())]


def device_fingerprint(threads: int | None = None) -> dict[str, Any]:
    """Everything needed to say which machine a number came from."""
    return {"hostname": platform.node(), "os": f"{platform.system()} {platform.release()}",
            "machine": platform.machine(), "cpu": cpu_facts(), "gpus": gpu_facts(),
            "threads_used": threads, "versions": tool_versions(("treefuse", "torch", "onnxruntime", "onnx",
                                                                 "coremltools", "tensorrt", "openvino", "numpy"))}
