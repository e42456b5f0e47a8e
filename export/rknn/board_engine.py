"""A .rknn on a Rockchip board's NPU through rknn-toolkit-lite2: the engine a device bundle carries for `rknn:`.

`treefuse pack rknn:m.rknn` copies this file into the bundle's runner as `rknn_engine.py`; it imports
nothing of treefuse or torch (numpy and, on the board, `rknnlite`). Without a Rockchip NPU (no
`rockchip` in the device tree, no NPU driver) it refuses in one line before importing anything, so
an x86 machine or a wrong board says so (exit 2) instead of crashing in the runtime's C library.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

try:
    from .manifest import BundleError  # inside a bundle's runner package
except ImportError:  # pragma: no cover  (read in the source tree)
    from treefuse.portable.manifest import BundleError

DEVICE_TREE = Path("/proc/device-tree/compatible")
NPU_DRIVER_FILES = (Path("/sys/kernel/debug/rknpu"), Path("/dev/rknpu"), Path("/proc/rknpu"))
PACKAGE = "rknn-toolkit-lite2"
NEEDS = "rknn-toolkit-lite2 and the board's librknnrt.so, on a Rockchip board"


def rockchip_soc(device_tree: Path = DEVICE_TREE) -> str | None:
    """The SoC the device tree names ('rk3588', 'rv1106', ...), or None when this is not a Rockchip board."""
    try:
        entries = device_tree.read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in entries:
        vendor, _, soc = entry.decode("ascii", "replace").partition(",")
        if vendor == "rockchip" and soc.startswith(("rk", "rv")):
            return soc
    return None


def load(path: Path, threads: int | None) -> "BoardEngine":
    """The artifact loaded on this board's NPU, or one line saying why it cannot be (BundleError: exit 2)."""
    soc = rockchip_soc()
    if soc is None:
        raise BundleError("no Rockchip NPU found (no 'rockchip' SoC in /proc/device-tree/compatible); run this "
                          "bundle on the Rockchip board it was exported for, or judge the .rknn on the toolkit's "
                          "simulator: treefuse parity --ref torch:W --cand rknn:m.rknn --images DIR")
    return BoardEngine(path, soc)


class BoardEngine:
    """One .rknn on the NPU: NCHW float32 in, float32 out (the runtime dequantizes an int8 output)."""

    def __init__(self, path: Path, soc: str) -> None:
        try:
            from rknnlite.api import RKNNLite
        except ImportError:
            raise BundleError(f"this bundle needs {PACKAGE} on the board ({soc}); pip install {PACKAGE} "
                              "(and the board's librknnrt.so from Rockchip's rknpu2 release)") from None
        self.soc, self.runtime = soc, f"{PACKAGE} on {soc}"
        self.lite = RKNNLite(verbose=False)
        if self.lite.load_rknn(str(path)) != 0 or self.lite.init_runtime() != 0:
            raise BundleError(f"{PACKAGE} cannot load {path.name} on this {soc}: was it exported with --platform "
                              f"{soc}? Is the NPU driver loaded?")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        outputs = [self.lite.inference(inputs=[np.ascontiguousarray(image[None])], data_format="nchw")
                   for image in batch]
        if any(output is None for output in outputs):
            raise BundleError(f"{PACKAGE} returned no output on this {self.soc}; see the runtime's log above")
        return np.concatenate([np.asarray(output[0], dtype=np.float32) for output in outputs], axis=0)
