"""Measurements merged into per-device grids (backend x size); a cell nobody measured stays None."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from treefuse.errors import TreefuseError
from treefuse.report.results import Evaluation, Latency, Quality, ResultFile

PREFER = ("newest", "first")  # how `--prefer` settles two files measuring the same cell

REFERENCE_BACKEND = "torch fp32"  # speed-ups are against PyTorch FP32 on the same device


@dataclass
class DeviceGrid:
    """Everything measured on one device, indexed for tables and plots."""

    device: str
    backends: list[str]
    sizes: list[tuple[int, int]]
    latency: dict[tuple[str, tuple[int, int]], Latency]
    quality: dict[str, Quality]
    evaluations: dict[tuple[str, str], Evaluation] = field(default_factory=dict)  # (backend, data) -> scores
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # backend -> its runner's record (artifact path, hash)

    def cell(self, backend: str, size: tuple[int, int]) -> Latency | None:
        return self.latency.get((backend, size))

    def speedup(self, backend: str, size: tuple[int, int]) -> float | None:
        """PyTorch FP32 p50 / this backend's p50 at the same size; None when either is missing."""
        reference, cell = self.cell(REFERENCE_BACKEND, size), self.cell(backend, size)
        if reference is None or cell is None or reference.timing != "device" or cell.timing != "device":
            return None
        return reference.p50_ms / cell.p50_ms

    def quality_size(self) -> tuple[int, int] | None:
        """The size whose latency the quality plot uses: 512x512 when measured, else the largest."""
        if (512, 512) in self.sizes:
            return (512, 512)
        return self.sizes[-1] if self.sizes else None


def build_grids(results: list[ResultFile], prefer: str | None = None) -> list[DeviceGrid]:
    """One grid per device, in the order devices first appear.

    Two files measuring the same cell (device, backend, size) are a conflict: refused, naming
    both, unless `prefer` is 'newest' (by the results' creation time) or 'first' (argument order).
    """
    grids: dict[str, DeviceGrid] = {}
    for result in results:
        if result.facts:
            grid = grids.setdefault(result.device, DeviceGrid(result.device, [], [], {}, {}))
            for backend, facts in result.facts.items():
                grid.facts.setdefault(backend, {**facts, "result_path": str(result.path)})  # sizes are found from it
        for evaluation in result.evaluations:
            grid = grids.setdefault(evaluation.device, DeviceGrid(evaluation.device, [], [], {}, {}))
            key = (evaluation.backend, evaluation.data)
            grid.evaluations[key] = _settle(grid.evaluations.get(key), evaluation, prefer)
        for item in [*result.latencies, *result.qualities]:
            grid = grids.setdefault(item.device, DeviceGrid(item.device, [], [], {}, {}))
            if item.backend not in grid.backends:
                grid.backends.append(item.backend)
            if isinstance(item, Latency):
                key, table = (item.backend, item.size), grid.latency
                if item.size not in grid.sizes:
                    grid.sizes.append(item.size)
            else:
                key, table = item.backend, grid.quality
                if item.reference not in grid.backends:
                    grid.backends.insert(0, item.reference)
            table[key] = _settle(table.get(key), item, prefer)
    for grid in grids.values():
        grid.sizes.sort(key=lambda s: (s[0] * s[1], s))
        # PyTorch first: it is what everything is compared with.
        grid.backends.sort(key=lambda b: b != REFERENCE_BACKEND)
    return list(grids.values())


def _settle(held: Any, new: Any, prefer: str | None) -> Any:
    """The measurement a cell keeps when a second one arrives (never silently)."""
    if held is None or held.source == new.source:
        return new
    if prefer == "first":
        return held
    if prefer == "newest":
        return new if new.created_utc >= held.created_utc else held
    what = {Latency: "latency", Quality: "parity", Evaluation: "quality vs ground truth"}[type(new)]
    where = f"{new.backend} at {size_text(new.size)}" if isinstance(new, Latency) else new.backend
    raise TreefuseError(f"{held.source} and {new.source} both give the {what} of {where} on {new.device}; "
                        "drop one file or pass --prefer newest|first")


def size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"
