"""Every format x precision exported into one folder, for `treefuse benchmark`.

Each cell is either an artifact (a KIND:PATH spec) or the one-line reason it cannot be made
here. An artifact already in the folder is reused only when its own record says it came
from the same weights (and calibration set) at the same precision.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

from treefuse.errors import GateFailed, TreefuseError


@dataclass(frozen=True)
class Cell:
    """One format x precision: the artifact's spec, or why there is none."""

    kind: str
    precision: str
    spec: str | None = None
    path: str | None = None
    reason: str | None = None
    export_s: float | None = None
    reused: bool = False
    route: str = "ptq"  # "qat": the artifact holds what a `treefuse qat` run learned (qat_run)
    gate_failed: bool = False  # its export was refused by its own gate: a quality verdict, not "not run here"
    qat_run: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def export_matrix(weights: Path, out_dir: Path, size: tuple[int, int], calib: Path | None,
                  matrix: tuple[tuple[str, str], ...] | None = None, paired_images: Path | None = None,
                  log: Callable[[str], None] = print) -> list[Cell]:
    """Export each (kind, precision) of `matrix` (default: the format table's) into `out_dir`; a cell that cannot
    be made says why.

    `size` is the largest input any artifact must take (formats with a fixed upper bound plan for it);
    `paired_images` go to the INT8 cells as `treefuse export --paired-images` takes them."""
    from treefuse.checkpoint import load_weights
    from treefuse.formats import benchmark_matrix

    source_sha256 = load_weights(weights).sha256
    calib_sha256 = _calibration_sha256(calib)
    out_dir.mkdir(parents=True, exist_ok=True)  # only once the inputs are known good: a refusal writes nothing
    cells: list[Cell] = []
    matrix = benchmark_matrix() if matrix is None else matrix
    failed: dict[Path, str] = {}  # OpenVINO runs the ONNX files: one failed export is not tried twice
    for kind, precision in matrix:
        reason = _unavailable(kind, precision, calib) or failed.get(out_dir / _file_name(kind, precision))
        if reason:
            cells.append(Cell(kind, precision, reason=reason))
            log(f"{kind} {precision}: not run ({reason})")
            continue
        path = out_dir / _file_name(kind, precision)
        spec = f"{kind}:{path}"
        expected_calib = calib_sha256 if _calibrated(kind, precision) else None
        if _is_reusable(spec, precision, source_sha256, expected_calib):
            cells.append(Cell(kind, precision, spec, str(path), reused=True))
            log(f"{kind} {precision}: reusing {path}")
            continue
        log(f"{kind} {precision}: exporting {path} ...")
        start = time.perf_counter()
        try:
            _export(kind, weights, path, precision, calib, size, source_sha256, calib_sha256, paired_images)
        except (TreefuseError, GateFailed) as exc:  # one format failing must not hide the others' figures
            what = "export refused by its own gate" if isinstance(exc, GateFailed) else "export failed"
            failed[path] = f"{what}: {exc}"
            cells.append(Cell(kind, precision, path=str(path), reason=failed[path],
                              gate_failed=isinstance(exc, GateFailed)))
            log(f"{kind} {precision}: {what} ({exc})")
            continue
        cells.append(Cell(kind, precision, spec, str(path), export_s=round(time.perf_counter() - start, 1)))
    return cells


def qat_cells(runs: list[Path], out_dir: Path, size: tuple[int, int], kinds: set[str] | None = None,
              paired_images: Path | None = None, log: Callable[[str], None] = print) -> list[Cell]:
    """One cell per (run, format whose INT8 scheme the run learned): exported with --qat, never reused."""
    from treefuse.export.request import ExportRequest, run_export
    from treefuse.formats import benchmark_matrix, format_of
    from treefuse.qat_run import read_settings, target_named

    cells: list[Cell] = []
    for run in runs:
        scheme = target_named(read_settings(run)["target"]).name
        for kind, precision in benchmark_matrix():
            row = format_of(kind)
            if row.precision(precision).scheme != scheme or row.artifact_of or (kinds and kind not in kinds):
                continue
            reason = row.unavailable_reason() or row.not_benchmarked
            path = out_dir / f"model.{precision}.{qat_file_tag(run)}{row.suffix}"
            refused = False
            if reason is None:
                log(f"{kind} {precision} (QAT {run}): exporting {path} ...")
                shape = {"range": {"min_hw": row.shape.min_hw, "max_hw": size}, "fixed": {"size": size}}.get(
                    row.shape.style, {})
                try:
                    start = time.perf_counter()
                    run_export(ExportRequest(kind, run, path, precision, paired_images=paired_images, qat_run=run,
                                             **shape))
                    cells.append(Cell(kind, precision, f"{kind}:{path}", str(path),
                                      export_s=round(time.perf_counter() - start, 1), route="qat", qat_run=str(run)))
                    continue
                except (TreefuseError, GateFailed) as exc:
                    reason = f"{'export refused by its own gate' if isinstance(exc, GateFailed) else 'export failed'}: {exc}"
                    refused = isinstance(exc, GateFailed)
            log(f"{kind} {precision} (QAT {run}): not run ({reason})")
            cells.append(Cell(kind, precision, path=str(path), reason=reason, route="qat", qat_run=str(run),
                              gate_failed=refused))
    return cells


def qat_file_tag(run: Path) -> str:
    """`qat-NAME` for a run folder, without saying QAT twice when the folder's name already does."""
    name = run.resolve().name
    return name if name.lower().startswith("qat") else f"qat-{name}"


def _unavailable(kind: str, precision: str, calib: Path | None) -> str | None:
    from treefuse.formats import formats_by_kind

    row = formats_by_kind().get(kind)
    if row is None:
        return f"unknown format {kind!r}"
    if precision not in row.precision_names:
        return f"{kind} has no {precision} precision"
    reason = row.unavailable_reason() or row.not_benchmarked
    if reason:
        return reason
    if row.precision(precision).calibrated and calib is None:
        return f"{precision} needs a calibration set: pass --calib"
    return None


def _calibrated(kind: str, precision: str) -> bool:
    from treefuse.formats import format_of

    return format_of(kind).precision(precision).calibrated


def _calibration_sha256(calib: Path | None) -> str | None:
    if calib is None:
        return None
    from treefuse.calib.store import load_calibration_set

    return load_calibration_set(calib).sha256


def _file_name(kind: str, precision: str) -> str:
    from treefuse.formats import format_of

    row = format_of(kind)
    return f"model.{precision}{format_of(row.artifact_of or kind).suffix}"  # OpenVINO runs the ONNX files


def _is_reusable(spec: str, precision: str, source_sha256: str, calibration_sha256: str | None) -> bool:
    from treefuse.runtimes.backends.registry import make_runner

    try:
        record = make_runner(spec).artifact()
    except TreefuseError:
        return False
    return (record.source_sha256 == source_sha256 and record.precision == precision
            and (calibration_sha256 is None or record.calibration_sha256 == calibration_sha256))


def _export(kind: str, weights: Path, path: Path, precision: str, calib: Path | None, size: tuple[int, int],
            source_sha256: str, calib_sha256: str | None, paired_images: Path | None = None) -> None:
    """One cell through the row's exporter, as `treefuse export` would; a row that runs another's files exports those."""
    from treefuse.export.request import ExportRequest, run_export
    from treefuse.formats import format_of

    row = format_of(kind)
    maker = format_of(row.artifact_of) if row.artifact_of else row
    calibration = calib if maker.precision(precision).calibrated else None
    if row.artifact_of and _is_reusable(f"{maker.kind}:{path}", precision, source_sha256, calibration and calib_sha256):
        return
    shape = {"range": {"min_hw": maker.shape.min_hw, "max_hw": size}, "fixed": {"size": size}}.get(maker.shape.style, {})
    judged_on = paired_images if maker.precision(precision).scheme and maker.source == "weights" else None
    run_export(ExportRequest(maker.kind, weights, path, precision, calibration, judged_on, **shape))
