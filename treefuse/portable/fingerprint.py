"""Which machine a figure came from, read without torch: CPU model, ISA flags (x86 and Arm), emulation."""
from __future__ import annotations

import ctypes
import os
import platform
from pathlib import Path
from typing import Any

X86_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8", "avx_vnni", "fma")
ARM_FLAGS = ("asimd", "fphp", "asimdhp", "asimddp", "asimdfhm", "sve", "sve2", "i8mm", "bf16")
# Linux arm64 hwcap bits (uapi asm/hwcap.h): what the kernel, or qemu-user, tells a process it may use.
_HWCAP = {"asimd": 1, "fphp": 9, "asimdhp": 10, "asimddp": 20, "sve": 22, "asimdfhm": 23}
_HWCAP2 = {"sve2": 1, "i8mm": 13, "bf16": 14}
_AT_HWCAP, _AT_HWCAP2 = 16, 26
# (implementer, part) -> core name, for the boards a camera is likely to use.
_ARM_PARTS = {("0x41", "0xd03"): "Cortex-A53", ("0x41", "0xd05"): "Cortex-A55", ("0x41", "0xd08"): "Cortex-A72",
              ("0x41", "0xd0b"): "Cortex-A76", ("0x41", "0xd41"): "Cortex-A78", ("0x41", "0xd42"): "Cortex-A78AE",
              ("0x41", "0xd0c"): "Neoverse-N1", ("0x41", "0xd40"): "Neoverse-V1", ("0x41", "0xd49"): "Neoverse-N2",
              ("0x41", "0xd4f"): "Neoverse-V2", ("0x4e", "0x004"): "NVIDIA Carmel"}


def read_cpuinfo(path: str | Path = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where it cannot be read)."""
    fields: dict[str, str] = {}
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return fields
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:
            fields[key.strip()] = value.strip()
    return fields


def arm_hwcap_flags() -> list[str]:
    """Arm features from the process's auxiliary vector (getauxval); [] elsewhere."""
    try:
        getauxval = ctypes.CDLL(None).getauxval
    except (OSError, AttributeError):
        return []
    getauxval.restype = ctypes.c_ulong
    hwcap, hwcap2 = getauxval(_AT_HWCAP), getauxval(_AT_HWCAP2)
    found = {name for name, bit in _HWCAP.items() if hwcap >> bit & 1}
    found |= {name for name, bit in _HWCAP2.items() if hwcap2 >> bit & 1}
    return [flag for flag in ARM_FLAGS if flag in found]


def cpu_facts(cpuinfo: dict[str, str] | None = None, machine: str | None = None) -> dict[str, Any]:
    """CPU model, the ISA flags that decide which precision is fast, and whether this is an emulated Arm."""
    cpuinfo = read_cpuinfo() if cpuinfo is None else cpuinfo
    machine = machine or platform.machine()
    is_arm = machine.lower() in ("aarch64", "arm64") or machine.lower().startswith("armv")
    x86_flags = set(cpuinfo.get("flags", "").split())
    facts: dict[str, Any] = {"model": cpuinfo.get("model name") or platform.processor() or "unknown",
                             "logical_cores": os.cpu_count(), "isa_flags": [f for f in X86_FLAGS if f in x86_flags]}
    if not is_arm:
        return facts
    arm_flags = set(cpuinfo.get("Features", "").split())
    part = (cpuinfo.get("CPU implementer", ""), cpuinfo.get("CPU part", ""))
    # qemu-user passes the host's /proc/cpuinfo through: an Arm process reading x86 flags is emulated.
    emulated = bool(x86_flags) and not arm_flags
    facts["isa_flags"] = [f for f in ARM_FLAGS if f in arm_flags] if arm_flags else arm_hwcap_flags()
    facts["isa_flags_source"] = "/proc/cpuinfo" if arm_flags else "getauxval(AT_HWCAP)"
    facts["model"] = (f"emulated aarch64 (qemu-user on {cpuinfo.get('model name', 'unknown host')})" if emulated
                      else _ARM_PARTS.get(part) or cpuinfo.get("model name") or f"Arm implementer {part[0]} part {part[1]}")
    facts["emulated"] = emulated
    return facts


def device_facts(threads: int | None, versions: dict[str, str], declared_emulated: bool = False) -> dict[str, Any]:
    """The device record every result carries (same keys as treefuse.device.device_fingerprint).

    `declared_emulated`: the caller knows this runs under an emulator (one that shows an Arm
    /proc/cpuinfo cannot be told apart from inside); its CPU is then named as emulated.
    """
    cpu = cpu_facts()
    if declared_emulated and not cpu.get("emulated"):
        cpu["model"], cpu["emulated"] = f"{cpu['model']} (emulated)", True
    return {"hostname": platform.node(), "os": f"{platform.system()} {platform.release()}",
            "machine": platform.machine(), "cpu": cpu, "gpus": [], "threads_used": threads,
            "emulated": bool(cpu.get("emulated")),
            "emulation": "declared by the caller" if declared_emulated else
            "detected (the host's /proc/cpuinfo seen by an Arm process)" if cpu.get("emulated") else "none seen",
            "versions": {"python": platform.python_version(), **versions}}
