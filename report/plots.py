"""A device's plots, each its own PNG: latency vs resolution, speed-up vs PyTorch, quality vs latency.

A plot is drawn only from two or more points (a resolution plot needs two resolutions on one
line); otherwise it is left out and a note says why. Missing measurements are left out of a plot
(a gap in a line, no bar), never drawn as zero.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

from treefuse.errors import TreefuseError
from treefuse.report.grid import REFERENCE_BACKEND, DeviceGrid, size_text

MIN_POINTS = 2  # one point is a number, not a plot


@dataclass(frozen=True)
class Plot:
    """One plot as PNG bytes, with the fewest points any of its series has (what the browser test checks)."""

    title: str
    png: bytes
    points: int


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise TreefuseError("report plots need matplotlib; pip install 'treefuse[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def device_plots(grid: DeviceGrid, size: tuple[int, int] | None = None) -> tuple[list[Plot], list[str]]:
    """The plots worth drawing for one device, and a note for each left out."""
    plt = _pyplot()
    colors = {b: plt.cm.tab10(i % 10) for i, b in enumerate(grid.backends)}
    plots, notes = [], []
    for draw in (_latency_plot, _speedup_plot, _quality_plot):
        figure, ax = plt.subplots(figsize=(5.4, 3.9), dpi=90)
        title, points, why_not = draw(ax, grid, colors, size)
        if points >= MIN_POINTS:
            figure.tight_layout()
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", facecolor="white")
            plots.append(Plot(title, buffer.getvalue(), points))
        else:
            notes.append(f"No '{title}' plot: {why_not}.")
        plt.close(figure)
    return plots, notes


def _timed(grid: DeviceGrid, backend: str, size: tuple[int, int]):
    cell = grid.cell(backend, size)
    return cell if cell is not None and cell.timing == "device" else None


def _latency_plot(ax, grid: DeviceGrid, colors: dict, size) -> tuple[str, int, str]:
    title = "Latency vs resolution"
    lines = []
    for backend in grid.backends:
        points = [(s[0] * s[1] / 1e6, _timed(grid, backend, s).p50_ms) for s in grid.sizes if _timed(grid, backend, s)]
        if len(points) >= MIN_POINTS:  # a backend timed at one resolution is no line
            xs, ys = zip(*points)
            ax.plot(xs, ys, "o-", color=colors[backend], label=backend)
            lines.append(len(points))
    if not lines:
        timed = sorted({size_text(s) for b in grid.backends for s in grid.sizes if _timed(grid, b, s)})
        return title, 0, (f"timed at one resolution ({', '.join(timed)}); `treefuse benchmark --sizes` or "
                          "`treefuse sweep --sizes` gives it more" if timed else "nothing timed on the device itself")
    megapixels = [s[0] * s[1] / 1e6 for s in grid.sizes]
    ax.set(xscale="log", yscale="log", xlabel="megapixels (log)", ylabel="p50 latency, ms (log)", title=title)
    ax.set_xticks(megapixels, [size_text(s) for s in grid.sizes], rotation=20, fontsize=8)
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return title, min(lines), ""


def _speedup_plot(ax, grid: DeviceGrid, colors: dict, size) -> tuple[str, int, str]:
    title = "Speed-up vs PyTorch FP32"
    if REFERENCE_BACKEND not in grid.backends:
        return title, 0, "no PyTorch FP32 run on this device"
    others = [b for b in grid.backends if b != REFERENCE_BACKEND]
    width = 0.8 / max(len(others), 1)
    bars = 0
    for i, backend in enumerate(others):
        for j, at in enumerate(grid.sizes):
            value = grid.speedup(backend, at)
            if value is not None:
                ax.bar(j + i * width, value, width, color=colors[backend], label=backend)
                bars += 1
    if bars < MIN_POINTS:
        return title, bars, "fewer than two engines timed beside PyTorch FP32 on the device itself"
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(grid.sizes))], [size_text(s) for s in grid.sizes], fontsize=8)
    ax.set(ylabel="x faster than PyTorch FP32", title=title)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=7)
    ax.grid(axis="y", alpha=0.3)
    return title, bars, ""


def _quality_plot(ax, grid: DeviceGrid, colors: dict, size) -> tuple[str, int, str]:
    title = "Quality vs latency"
    size = size if size in grid.sizes else grid.quality_size()
    points = 0
    for backend, quality in grid.quality.items():
        cell = _timed(grid, backend, size) if size else None
        if cell is None or quality.output_psnr_min_db != quality.output_psnr_min_db:  # untimed, or NaN PSNR
            continue
        points += 1
        ax.scatter(cell.p50_ms, quality.output_psnr_min_db, s=60, color=colors[backend], label=backend)
        note = f"task {quality.task_psnr_db:.2f} dB" if quality.task_psnr_db is not None else ""
        ax.annotate(note, (cell.p50_ms, quality.output_psnr_min_db), fontsize=7, xytext=(4, 4), textcoords="offset points")
    if points < MIN_POINTS:
        return title, points, "fewer than two engines have both a parity result and a latency timed on the device"
    ax.set(xlabel=f"p50 latency at {size_text(size)}, ms", ylabel="output PSNR vs reference (min), dB", title=title)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    return title, points, ""
