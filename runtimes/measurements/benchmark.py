"""One table for every artifact: parity against PyTorch with the default gates, latency interleaved side by side.

The artifacts are made elsewhere (export/matrix.py); this module only runs them. Rows for
formats that cannot run here carry the reason instead of figures.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from treefuse.files import sha256_file
from treefuse.runtimes.measurements.bench import bench_result
from treefuse.runtimes.measurements.memory import peak_memory_in_own_process
from treefuse.runtimes.measurements.parity import parity_result
from treefuse.runtimes.backends.registry import make_runner


def artifact_size_bytes(path: str | Path) -> int:
    """Bytes on disk of a file, or of every file in a package folder."""
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def run_benchmark(reference_spec: str, cells: list[dict[str, Any]], images_dir: Path, size: tuple[int, int],
                  warmup: int = 2, iters: int = 10, threads: int | None = None,
                  progress: bool = False, more_sizes: tuple[tuple[int, int], ...] = (),
                  memory: bool = True) -> dict[str, Any]:
    """Parity of each runnable cell vs the reference on `images_dir`, then all latencies in one interleaved run.

    `more_sizes` are timed too (one interleaved run each, "more_bench"), for latency vs resolution;
    `memory` adds each backend's peak memory at `size`, measured in a process of its own.
    """
    reference = make_runner(reference_spec, threads=threads)
    runnable = [cell for cell in cells if cell.get("spec")]
    candidates = [make_runner(cell["spec"], threads=threads) for cell in runnable]
    try:
        for runner in (reference, *candidates):
            runner.activate()
        parities = [parity_result(reference, candidate, images_dir, threads=threads, progress=progress)
                    for candidate in candidates]
        bench = bench_result([reference, *candidates], (1, 3, *size), warmup, iters, threads, progress=progress)
        more = [bench_result([reference, *candidates], (1, 3, *other), warmup, iters, threads, progress=progress)
                for other in dict.fromkeys(more_sizes) if tuple(other) != tuple(size)]
    finally:
        for runner in (reference, *candidates):
            runner.deactivate()
    for measured in (bench, *more):
        for facts in measured.backends:
            facts["file_bytes"] = artifact_size_bytes(facts["path"])  # the report's size column reads it
    if memory:  # after timing, so no child process competes with the timed runs
        for facts in bench.backends:
            facts["memory"] = peak_memory_in_own_process(facts["spec"], (1, 3, *size), threads)
    rows = [_row(cell, parity.to_json(), latency, bench.backends[0])
            for cell, parity, latency in zip(runnable, parities, bench.backends[1:])]
    rows.insert(0, _reference_row(bench.backends[0], parities))
    rows += [{"format": cell["kind"], "precision": cell["precision"], "route": cell.get("route", "ptq"),
              "verdict": "not run", "reason": cell["reason"]} for cell in cells if not cell.get("spec")]
    return {"rows": rows, "bench": bench.to_json(), "parity": [parity.to_json() for parity in parities],
            "more_bench": [measured.to_json() for measured in more]}


def hinted_cells(cells: list[dict[str, Any]], cpu_flags: list[str]) -> list[dict[str, Any]]:
    """Cells for the precisions a runtime computes on another precision's artifact (the format table's `hint_of`,
    e.g. OpenVINO bf16 on the FP32 ONNX): runnable where the CPU has one of the row's `cpu_flags`, else why not."""
    from treefuse.formats import FORMATS

    made = {(c["kind"], c["precision"]): c for c in cells if c.get("route", "ptq") == "ptq"}
    hinted = []
    for row in FORMATS:
        for precision in row.precisions:
            base = made.get((row.kind, precision.hint_of)) if precision.hint_of else None
            if base is None:
                continue
            cell = {"kind": row.kind, "precision": precision.name, "spec": None, "path": None, "reason": None,
                    "export_s": None, "reused": base.get("reused", False), "route": "ptq", "gate_failed": False,
                    "qat_run": None}
            if precision.cpu_flags and not set(precision.cpu_flags) & set(cpu_flags):
                cell["reason"] = f"not on this CPU (no {'/'.join(precision.cpu_flags)})"
            elif not base.get("spec"):
                cell["reason"] = f"runs the {precision.hint_of} artifact, which was not made ({base.get('reason')})"
            else:
                cell.update(spec=f"{base['spec']}?precision={precision.name}", path=base["path"])
            hinted.append(cell)
    return hinted


def _reference_row(latency: dict[str, Any], parities: list[Any]) -> dict[str, Any]:
    task = next((p.task for p in parities if p.task), None)
    return {"format": "torch", "precision": "fp32", "spec": latency["spec"],
            "file_bytes": artifact_size_bytes(latency["path"]), "output_psnr_db": None,
            "task_psnr_db": task["ref_psnr_db"] if task else None, "task_drop_db": 0.0 if task else None,
            "worst_task_drop_db": 0.0 if task else None,
            "p50_ms": latency["latency_ms"]["p50"], "p90_ms": latency["latency_ms"]["p90"], "speedup_vs_torch": 1.0,
            "verdict": "reference", "sha256": sha256_file(latency["path"])}


def _row(cell: dict[str, Any], parity: dict[str, Any], latency: dict[str, Any],
         reference: dict[str, Any]) -> dict[str, Any]:
    task, worst = parity.get("task") or {}, parity.get("worst_image") or {}
    return {"format": cell["kind"], "precision": cell["precision"], "route": cell.get("route", "ptq"),
            "spec": cell["spec"], "file_bytes": artifact_size_bytes(cell["path"]),
            "output_psnr_db": (parity.get("output_psnr_db") or {}).get("min"),
            "task_psnr_db": task.get("cand_psnr_db"),
            "task_drop_db": task["ref_psnr_db"] - task["cand_psnr_db"] if task else None,
            "worst_task_drop_db": -worst["task_delta_db"] if "task_delta_db" in worst else None,
            "worst_image": worst.get("image"),
            "p50_ms": latency["latency_ms"]["p50"], "p90_ms": latency["latency_ms"]["p90"],
            "speedup_vs_torch": reference["latency_ms"]["p50"] / latency["latency_ms"]["p50"],
            "verdict": "pass" if parity["passed"] else "FAIL: " + "; ".join(parity["failures"]),
            "gates": parity.get("gates"), "sha256": latency.get("sha256")}


def format_benchmark_table(rows: list[dict[str, Any]]) -> str:
    """The benchmark as a fixed-width table; rows that did not run show their reason."""
    header = (f"{'format':<11} {'prec':<9} {'size KB':>8} {'out PSNR':>9} {'task PSNR':>9} {'drop dB':>8} "
              f"{'worst dB':>8} {'p50 ms':>8} {'p90 ms':>8} {'x torch':>8}  verdict")
    lines = [header, "-" * len(header)]
    for row in rows:
        if row["verdict"] == "not run":
            lines.append(f"{row['format']:<11} {_precision(row):<9} not run: {row['reason']}")
            continue
        lines.append(f"{row['format']:<11} {_precision(row):<9} {row['file_bytes'] / 1024:>8.0f} "
                     f"{_db(row['output_psnr_db']):>9} {_db(row['task_psnr_db']):>9} {_db(row['task_drop_db'], 3):>8} "
                     f"{_db(row.get('worst_task_drop_db'), 3):>8} "
                     f"{row['p50_ms']:>8.1f} {row['p90_ms']:>8.1f} {row['speedup_vs_torch']:>8.2f}  {row['verdict']}")
    return "\n".join(lines)


def _precision(row: dict[str, Any]) -> str:
    return row["precision"] + (" QAT" if row.get("route") == "qat" else "")  # QAT rows beside their PTQ rows


def _db(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"
