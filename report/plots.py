"""One row of plots per device, as PNG bytes: latency vs resolution, speed-up vs PyTorch, quality vs latency.

Missing measurements are left out of a plot (a gap in a line, no bar), never drawn as zero.
"""
from __future__ import annotations

import io

from treefuse.errors import TreefuseError
from treefuse.report.grid import REFERENCE_BACKEND, DeviceGrid, size_text


def _pyplot():
    try:
        import matplotlib
    except ImportError:
        raise TreefuseError("report plots need matplotlib; pip install 'treefuse[report]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def device_figure(grid: DeviceGrid) -> bytes:
    """The three plots of one device side by side, as a PNG."""
    plt = _pyplot()
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.6), dpi=90)
    colors = {b: plt.cm.tab10(i % 10) for i, b in enumerate(grid.backends)}
    _latency_plot(axes[0], grid, colors)
    _speedup_plot(axes[1], grid, colors)
    _quality_plot(axes[2], grid, colors)
    figure.suptitle(grid.device, fontsize=11)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", facecolor="white")
    plt.close(figure)
    return buffer.getvalue()


def _latency_plot(ax, grid: DeviceGrid, colors: dict) -> None:
    megapixels = [s[0] * s[1] / 1e6 for s in grid.sizes]
    for backend in grid.backends:
        points = [(mp, grid.cell(backend, s).p50_ms) for mp, s in zip(megapixels, grid.sizes)
                  if grid.cell(backend, s) and grid.cell(backend, s).timing == "device"]
        if points:
            xs, ys = zip(*points)
            ax.plot(xs, ys, "o-", color=colors[backend], label=backend)
    ax.set(xscale="log", yscale="log", xlabel="megapixels (log)", ylabel="p50 latency, ms (log)",
           title="Latency vs resolution")
    ax.set_xticks(megapixels, [size_text(s) for s in grid.sizes], rotation=20, fontsize=8)
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:  # nothing timed on the device itself: no legend to draw
        ax.legend(fontsize=8)


def _speedup_plot(ax, grid: DeviceGrid, colors: dict) -> None:
    others = [b for b in grid.backends if b != REFERENCE_BACKEND]
    width = 0.8 / max(len(others), 1)
    for i, backend in enumerate(others):
        for j, size in enumerate(grid.sizes):
            value = grid.speedup(backend, size)
            if value is not None:
                ax.bar(j + i * width, value, width, color=colors[backend], label=backend)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(grid.sizes))], [size_text(s) for s in grid.sizes], fontsize=8)
    ax.set(ylabel="x faster than PyTorch FP32", title="Speed-up vs PyTorch FP32")
    if REFERENCE_BACKEND not in grid.backends:
        ax.text(0.5, 0.5, "no PyTorch FP32 run on this device", ha="center", transform=ax.transAxes)
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    if unique:
        ax.legend(unique.values(), unique.keys(), fontsize=8)
    ax.grid(axis="y", alpha=0.3)


def _quality_plot(ax, grid: DeviceGrid, colors: dict) -> None:
    size = grid.quality_size()
    plotted = False
    for backend, quality in grid.quality.items():
        cell = grid.cell(backend, size) if size else None
        if cell is None or cell.timing != "device":
            continue
        plotted = True
        ax.scatter(cell.p50_ms, quality.output_psnr_min_db, s=60, color=colors[backend], label=backend)
        note = f"task {quality.task_psnr_db:.2f} dB" if quality.task_psnr_db is not None else ""
        ax.annotate(note, (cell.p50_ms, quality.output_psnr_min_db), fontsize=7, xytext=(4, 4), textcoords="offset points")
    ax.set(xlabel=f"p50 latency at {size_text(size) if size else '—'}, ms", ylabel="output PSNR vs reference (min), dB",
           title="Quality vs latency")
    if plotted:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no parity with a latency at this size", ha="center", transform=ax.transAxes)
    ax.grid(alpha=0.3)
