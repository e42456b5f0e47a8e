"""The table a report opens with: per device, each engine's gate verdict, task-PSNR change, speed, size and memory,
and which engine to ship (the fastest passing every gate, and the smallest)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treefuse.report.grid import REFERENCE_BACKEND, DeviceGrid, size_text
from treefuse.report.tables import MISSING, Table, fmt, verdict_text


CLOSE = 0.05  # runners-up within this fraction of the fastest p50 are named beside it


@dataclass(frozen=True)
class Verdict:
    """One engine x precision on one device, as the verdict table shows it."""

    backend: str
    status: str  # "passed", "FAILED", "reference" or "not judged" (no parity result on this device)
    gates: str  # the verdict with its thresholds, and why it failed
    task_delta_db: float | None  # mean task-PSNR change vs the reference (negative: a loss)
    worst_delta_db: float | None  # the image that changed most
    p50_ms: float | None  # at the verdict's size, timed on the device itself (None: not, or not measured)
    timing: str | None  # "device", "emulated", "simulated", "evaluator" or None when not timed at that size
    size_bytes: int | None
    peak_rss_mib: float | None
    memory_method: str = ""  # "own process ..." when the backend was measured alone
    unstable: bool = False  # p90/p50 > 1.5: the machine was too noisy for this p50 to decide much


def verdict_size(grid: DeviceGrid, size: tuple[int, int] | None = None) -> tuple[int, int] | None:
    """The resolution the verdict's latency is read at: the user's when measured there, else the grid's default."""
    return size if size in grid.sizes else grid.quality_size()


def verdicts(grid: DeviceGrid, size: tuple[int, int] | None = None) -> list[Verdict]:
    """One Verdict per backend of the grid, the reference first."""
    size = verdict_size(grid, size)
    rows = []
    for backend in grid.backends:
        quality, cell = grid.quality.get(backend), grid.cell(backend, size) if size else None
        if quality is not None:
            status = "passed" if quality.passed else "FAILED"
            gates = verdict_text(quality) + (": " + "; ".join(quality.failures) if quality.failures else "")
            delta = (None if quality.task_psnr_db is None or quality.reference_task_psnr_db is None
                     else quality.task_psnr_db - quality.reference_task_psnr_db)
            worst = quality.worst_task_delta_db
        else:
            is_reference = backend == REFERENCE_BACKEND or any(q.reference == backend for q in grid.quality.values())
            status = "reference" if is_reference else "not judged"
            gates = "reference (what the others are judged against)" if is_reference else "no parity run on this device"
            delta = worst = None
        rows.append(Verdict(backend, status, gates, delta, worst, cell.p50_ms if cell else None,
                            cell.timing if cell else None, artifact_bytes(grid.facts.get(backend)),
                            cell.peak_rss_mib if cell else None, (cell.memory_method or "") if cell else "",
                            bool(cell and cell.unstable)))
    return rows


def recommendation(rows: list[Verdict]) -> str:
    """'fastest passing every gate: X; smallest: Y', or why there is none."""
    passing = [r for r in rows if r.status == "passed"]
    if not passing:
        return "no engine passes every gate on this device" + ("" if any(r.status == "FAILED" for r in rows)
                                                               else " (none was judged: no parity results)")
    timed = [r for r in passing if r.p50_ms is not None and r.timing == "device"]
    if timed:
        best = min(timed, key=lambda r: r.p50_ms)
        fastest = f"fastest passing every gate: **{best.backend}** ({best.p50_ms:.1f} ms p50" + (
            ", an unstable timing: measure again on a quiet machine)" if best.unstable else ")")
        close = [r.backend for r in timed if r is not best and r.p50_ms <= best.p50_ms * (1 + CLOSE)]
        if close:  # a few percent is within one shared machine's noise: say so rather than crown one
            fastest += f", {', '.join(close)} within {CLOSE:.0%}"
    elif any(r.timing in ("emulated", "evaluator", "simulated") for r in passing):
        fastest = "fastest: not known here (latency emulated, simulated or evaluated, not timed on the device)"
    else:
        fastest = "fastest: not known here (no latency at this resolution)"
    sized = [r for r in passing if r.size_bytes is not None]
    if sized:
        small = min(sized, key=lambda r: r.size_bytes)
        smallest = f"smallest passing every gate: **{small.backend}** ({small.size_bytes / 1024:.0f} KB)"
    else:
        smallest = "smallest: not known (no artifact sizes recorded or found)"
    return f"{fastest}; {smallest}"


def verdict_table(grid: DeviceGrid, size: tuple[int, int] | None = None) -> tuple[Table, str, list[str]]:
    """The verdict table, its recommendation line, and notes on the columns left out."""
    size = verdict_size(grid, size)
    rows = verdicts(grid, size)
    notes = []
    show_memory = any(r.peak_rss_mib is not None and r.memory_method.startswith("own process") for r in rows)
    if not any(r.peak_rss_mib is not None for r in rows):
        notes.append("Peak memory: not measured in these result files, so the column is left out "
                     "(`treefuse benchmark` measures each engine in a process of its own).")
    elif not show_memory:
        notes.append("Peak memory: these results measured it with every backend loaded in one process, which is no "
                     "figure for one engine, so the column is left out here (the tables below have those figures; "
                     "`treefuse benchmark` measures each engine in a process of its own).")
    header = ["engine", "gates", "task PSNR change, mean / worst image, dB",
              f"p50 at {size_text(size) if size else MISSING}, ms", "artifact, KB"] + (
        ["peak memory, MiB"] if show_memory else [])
    body = []
    for r in rows:
        p50 = fmt(r.p50_ms, ".1f") + (f" ({r.timing})" if r.p50_ms is not None and r.timing != "device" else "")
        change = MISSING if r.task_delta_db is None else f"{_change(r.task_delta_db)} / {_change(r.worst_delta_db)}"
        size_kb = fmt(None if r.size_bytes is None else r.size_bytes / 1024, ".0f")
        alone = r.peak_rss_mib if r.memory_method.startswith("own process") else None
        body.append([r.backend, r.gates, change, p50, size_kb] + ([fmt(alone, ".0f")] if show_memory else []))
    title = f"Verdict on {grid.device} (gates of each engine's own precision; p50 at {size_text(size) if size else MISSING})"
    return (title, header, body), recommendation(rows), notes


def _change(value: float | None) -> str:
    """A task-PSNR change to the thousandth, with no '-0.000' for a change that rounds to nothing."""
    return MISSING if value is None else "0.000" if abs(value) < 0.0005 else f"{value:+.3f}"


def artifact_bytes(facts: dict[str, Any] | None) -> int | None:
    """The artifact's size: recorded in the result, else the file on disk when its sha256 still matches."""
    if not facts:
        return None
    if facts.get("file_bytes") is not None:
        return int(facts["file_bytes"])
    from treefuse.files import sha256_file
    from treefuse.report.verify import locate

    anchor = Path(facts.get("result_path", "."))
    found = locate(str(facts.get("path", "")), anchor) if facts.get("path") else None
    if found is None:
        return None
    if found.is_dir():  # a package (Core ML): its files together
        return sum(p.stat().st_size for p in found.rglob("*") if p.is_file())
    return found.stat().st_size if sha256_file(found) == facts.get("sha256") else None  # another file now
