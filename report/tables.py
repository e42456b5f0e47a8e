"""The report's tables as rows of strings, shared by the Markdown and the HTML page; missing is '—', never 0."""
from __future__ import annotations

from typing import Any, Callable

from treefuse.report.grid import DeviceGrid, size_text

MISSING = "—"

Table = tuple[str, list[str], list[list[str]]]  # title, header, rows


def fmt(value: float | None, spec: str) -> str:
    return MISSING if value is None else format(value, spec)


def _by_size(grid: DeviceGrid, title: str, value: Callable[[str, tuple[int, int]], str]) -> Table:
    header = ["backend", *[size_text(s) for s in grid.sizes]]
    rows = [[backend, *[value(backend, size) for size in grid.sizes]] for backend in grid.backends]
    return title, header, rows


def device_tables(grid: DeviceGrid) -> list[Table]:
    """Latency, speed-up, throughput, memory and quality tables for one device."""
    def latency(b: str, s: tuple[int, int]) -> str:
        cell = grid.cell(b, s)
        if cell is None:
            return MISSING
        marks = (" unstable" if cell.unstable else "") + (f" {cell.timing}" if cell.timing != "device" else "")
        return f"{cell.p50_ms:.2f} (p90 {cell.p90_ms:.2f}){marks}"

    def memory(b: str, s: tuple[int, int]) -> str:
        cell = grid.cell(b, s)
        if cell is None:
            return MISSING
        text = f"{fmt(cell.peak_rss_mib, '.0f')} (+{fmt(cell.peak_rss_delta_mib, '.0f')})"
        text += " own process" if (cell.memory_method or "").startswith("own process") else ""
        return text + (f" / GPU {cell.cuda_peak_mib:.0f}" if cell.cuda_peak_mib is not None else "")

    tables = [
        _by_size(grid, "Latency p50 (p90), ms ('unstable': p90/p50 > 1.5; 'emulated': run under a CPU emulator, "
                 "'simulated': on a simulator of the device (RKNN's x86 one), 'evaluator': timed through treefuse's "
                 "stand-in of the runtime, not the device's: all left out of ratios and plots)", latency),
        _by_size(grid, "Speed-up vs PyTorch FP32 (x, higher is faster)",
                 lambda b, s: fmt(grid.speedup(b, s), ".2f")),
        _by_size(grid, "Throughput, images/s", lambda b, s: fmt(getattr(grid.cell(b, s), "throughput_img_per_s", None), ".2f")),
    ]
    if any(cell.peak_rss_mib is not None for cell in grid.latency.values()):  # a table of '—' says nothing
        tables.append(_by_size(grid, "Peak resident memory, MiB: process total (+ growth during one call); "
                               "'own process' figures load one backend alone", memory))
    if grid.quality:
        tables.append(quality_table(grid))
    if grid.evaluations:
        tables.append(evaluation_table(grid))
    return tables


def evaluation_table(grid: DeviceGrid) -> Table:
    """`treefuse evaluate` results: each backend against ground truth (Y channel, BT.601)."""
    header = ["backend", "paired data", "images", "Y-PSNR, dB", "Y-SSIM", "rainy input Y-PSNR, dB"]
    rows = [[e.backend, e.data, str(e.count), f"{e.psnr_y_db:.2f}", f"{e.ssim_y:.4f}", fmt(e.input_psnr_y_db, ".2f")]
            for e in grid.evaluations.values()]
    return "Quality vs ground truth (treefuse evaluate)", header, rows


def quality_table(grid: DeviceGrid) -> Table:
    """Parity PSNR against the reference backend, task PSNR, and latency at the quality plot's size."""
    size = grid.quality_size()
    header = ["backend", "vs", "output PSNR min / mean, dB", "task PSNR, dB", "task Δ, dB",
              f"p50 ms at {size_text(size) if size else MISSING}", "gates"]
    rows = []
    for backend in grid.backends:
        q = grid.quality.get(backend)
        cell = grid.cell(backend, size) if size else None
        p50 = fmt(cell.p50_ms if cell else None, ".2f")
        if q is None:
            reference_of = next((x for x in grid.quality.values() if x.reference == backend), None)
            task = reference_of.reference_task_psnr_db if reference_of else None
            rows.append([backend, "(reference)" if reference_of else MISSING, MISSING, fmt(task, ".2f"), MISSING, p50, MISSING])
            continue
        delta = None if q.task_psnr_db is None or q.reference_task_psnr_db is None else q.task_psnr_db - q.reference_task_psnr_db
        rows.append([backend, q.reference, f"{q.output_psnr_min_db:.2f} / {q.output_psnr_mean_db:.2f}",
                     fmt(q.task_psnr_db, ".2f"), fmt(delta, "+.3f"), p50, verdict_text(q)])
    return "Quality vs latency (parity against the reference backend)", header, rows


def verdict_text(quality) -> str:
    """'passed'/'FAILED' with the thresholds it was judged by."""
    verdict = "passed" if quality.passed else "FAILED"
    gates = quality.gates
    if not gates:
        return f"{verdict} (thresholds not recorded)"
    worst = gates.get("max_worst_task_drop_db")  # absent in results written before the worst-image gate
    return (f"{verdict} (>= {gates['min_output_psnr_db']:g} dB, drop <= {gates['max_task_drop_db']:g} dB, "
            + (f"worst image <= {worst:g} dB, " if worst is not None else "") + f"{gates.get('precision', '?')} gates)")


def markdown_table(table: Table) -> str:
    title, header, rows = table
    lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def sources_table(manifest: dict[str, Any]) -> Table:
    """Every result file and artifact the report stands on, with its sha256 (what --verify re-checks)."""
    rows = [["result", r["path"], r["sha256"][:16], r.get("device", "")] for r in manifest["results"]]
    rows += [["artifact", a["path"], a["sha256"][:16],
              f"{a['kind']}" + (f", from weights {a['source_sha256'][:16]}" if a.get("source_sha256") else "")]
             for a in manifest["artifacts"]]
    return "Sources (sha256 prefixes; full hashes in the manifest)", ["what", "path", "sha256", "notes"], rows
