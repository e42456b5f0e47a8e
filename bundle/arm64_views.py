"""How a bundle runs inside the emulated arm64 root: which Arm CPU qemu emulates and what the runtimes are shown.

The runtimes pick their kernels from their own CPU probe (cpuinfo): it reads the CPU list from
/sys and the core from /proc/cpuinfo, and the ISA features from the process's hwcaps. Under
qemu-user, /proc/cpuinfo is the x86 host's, so the probe fails and the runtimes fall back to
generic kernels (XNNPACK refuses to start). A view that shows an Arm /proc/cpuinfo (the core of
its name, the features qemu really offers) lets the probe succeed, so the kernels of that core
class run: NEON, dot product, i8mm. Everything stays emulated: latency means nothing.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

ARM_PYTHON = "/opt/treefuse-venv/bin/python"
STUBS = "/opt/cuda-stubs"  # bundle/cuda_stubs.py: lets ExecuTorch's runtime import PyPI's CUDA build of torch


@dataclass(frozen=True)
class ArmView:
    """One emulated Arm CPU: qemu's model and the core /proc/cpuinfo names (None: the host's cpuinfo)."""

    name: str
    qemu_cpu: str
    part: str | None  # MIDR part number of an Arm Ltd core, e.g. 0xd08 (Cortex-A72)
    describes: str


VIEWS = (
    ArmView("arm64", "max", None, "qemu's `max` CPU, the host's /proc/cpuinfo: the runtimes' CPU probe fails"),
    ArmView("arm64-cortex-a72", "cortex-a72", "0xd08", "NEON only (Cortex-A72, Raspberry Pi 4 class)"),
    ArmView("arm64-neoverse-n1", "neoverse-n1", "0xd0c",
            "NEON, dot product, FP16 (Neoverse-N1 = Cortex-A76 class; Jetson Orin's A78AE has the same features)"),
    ArmView("arm64-armv9", "max", "0xd4f", "NEON, dot product, i8mm, BF16, SVE2 (qemu `max`, shown as Neoverse-V2)"),
)


def chroot_command(root: Path, view: ArmView, *args: str) -> list[str]:
    return ["chroot", str(root), "env", f"QEMU_CPU={view.qemu_cpu}", f"LD_LIBRARY_PATH={STUBS}", ARM_PYTHON, *args]


def hwcap_flags(root: Path, view: ArmView, runner_dir: str) -> list[str]:
    """The Arm features qemu offers a process in this view (read inside the root with a bundle's own runner)."""
    code = f"import sys; sys.path.insert(0, {runner_dir!r}); from bundle_runner.fingerprint import arm_hwcap_flags; " \
           "print(' '.join(arm_hwcap_flags()))"
    done = subprocess.run(chroot_command(root, view, "-c", code), capture_output=True, text=True, check=True)
    return done.stdout.split()


def show_cpu(root: Path, view: ArmView, runner_dir: str) -> None:
    """Put the view's /proc/cpuinfo and /sys CPU list in place (or leave the host's, for the plain view)."""
    cpu_dir = root / "sys" / "devices" / "system" / "cpu"
    cpuinfo = root / "proc" / "cpuinfo"
    if subprocess.run(["mountpoint", "-q", str(cpuinfo)]).returncode == 0:
        subprocess.run(["umount", str(cpuinfo)], check=True)
    if view.part is None:
        shutil.rmtree(root / "sys" / "devices", ignore_errors=True)
        return
    cpu_dir.mkdir(parents=True, exist_ok=True)
    for name in ("possible", "present", "online"):
        (cpu_dir / name).write_text("0-1\n")
    features = " ".join(["fp", *hwcap_flags(root, view, runner_dir)])
    text = "".join(f"processor\t: {cpu}\nBogoMIPS\t: 50.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
                   f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {view.part}\nCPU revision\t: 0\n\n"
                   for cpu in range(2))
    shown = root / "work" / f"cpuinfo-{view.name}"
    shown.write_text(text)
    subprocess.run(["mount", "--bind", str(shown), str(cpuinfo)], check=True)


def mount_for_chroot(root: Path) -> None:
    """/proc and /dev inside the arm64 root, once.

    Not the host's /sys: with the host's CPU topology there and x86 /proc/cpuinfo, ONNX Runtime 1.32
    aarch64 segfaulted under qemu-user in its CPU probe (seen here 2026-12-03).
    """
    for source, target, options in (("proc", root / "proc", ["-t", "proc"]), ("/dev", root / "dev", ["--bind"])):
        if subprocess.run(["mountpoint", "-q", str(target)]).returncode != 0:
            subprocess.run(["mount", *options, source, str(target)], check=True)


def unmount_chroot(root: Path) -> None:
    """Undo mount_for_chroot: a later `rm -rf` of the cached root must never reach the host's /dev."""
    for target in (root / "proc" / "cpuinfo", root / "dev", root / "proc"):
        if subprocess.run(["mountpoint", "-q", str(target)]).returncode == 0:
            subprocess.run(["umount", str(target)], check=True)
