"""A fingerprint of the machine a measurement ran on, recorded once per result file."""
from __future__ import annotations

import platform
from typing import Any

from treefuse.portable.fingerprint import cpu_facts as portable_cpu_facts
from treefuse.provenance import tool_versions


def cpu_flags_text() -> str:
    """The CPU's speed-relevant flags in one line, to print beside every speed figure."""
    facts = cpu_facts()
    return f"{facts['model']} ({', '.join(facts['isa_flags']) or 'no AVX2'})"


def cpu_facts() -> dict[str, Any]:
    """CPU model and the instruction-set flags (x86 or Arm) that decide which precision is fast."""
    return portable_cpu_facts()  # the same reading a device bundle records


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
            "threads_used": threads, "versions": tool_versions()}
