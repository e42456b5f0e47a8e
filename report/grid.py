"""Measurements merged into per-device grids (backend x size); a cell nobody measured stays None."""
from __future__ import annotations

from dataclasses import dataclass

from treefuse.report.results import Latency, Quality, ResultFile

REFERENCE_BACKEND = "torch fp32"  # speed-ups are against PyTorch FP32 on the same device


@dataclass
class DeviceGrid:
    """Everything measured on one device, indexed for tables and plots."""

    device: str
    backends: list[str]
    sizes: list[tuple[int, int]]
    latency: dict[tuple[str, tuple[int, int]], Latency]
    quality: dict[str, Quality]

    def cell(self, backend: str, size: tuple[int, int]) -> Latency | None:
        return self.latency.get((backend, size))

    def speedup(self, backend: str, size: tuple[int, int]) -> float | None:
        """PyTorch FP32 p50 / this backend's p50 at the same size; None when either is missing."""
        reference, cell = self.cell(REFERENCE_BACKEND, size), self.cell(backend, size)
        if reference is None or cell is None:
            return None
        return reference.p50_ms / cell.p50_ms

    def quality_size(self) -> tuple[int, int] | None:
        """The size whose latency the quality plot uses: 512x512 when measured, else the largest."""
        if (512, 512) in self.sizes:
            return (512, 512)
        return self.sizes[-1] if self.sizes else None


def build_grids(results: list[ResultFile]) -> list[DeviceGrid]:
    """One grid per device, in the order devices first appear; a later file's cell replaces an earlier one."""
    grids: dict[str, DeviceGrid] = {}
    for result in results:
        for item in [*result.latencies, *result.qualities]:
            grid = grids.setdefault(item.device, DeviceGrid(item.device, [], [], {}, {}))
            if item.backend not in grid.backends:
                grid.backends.append(item.backend)
            if isinstance(item, Latency):
                grid.latency[(item.backend, item.size)] = item
                if item.size not in grid.sizes:
                    grid.sizes.append(item.size)
            else:
                grid.quality[item.backend] = item
                if item.reference not in grid.backends:
                    grid.backends.insert(0, item.reference)
    for grid in grids.values():
        grid.sizes.sort(key=lambda s: (s[0] * s[1], s))
        # PyTorch first: it is what everything is compared with.
        grid.backends.sort(key=lambda b: b != REFERENCE_BACKEND)
    return list(grids.values())


def size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
