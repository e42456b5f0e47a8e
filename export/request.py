"""The one export pipeline: a request checked against its format's row once, staged, converted by the row's
exporter, judged by its precision's gates, recorded, and moved into place with its companions.

A format's exporter implements only the conversion, `convert(request, staged) -> Converted`: it writes the
artifact at `staged` (and any companion beside it, named after it) and says how to judge it. The CLI,
`treefuse benchmark` and the Python helpers reach every format through `run_export` alone.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from treefuse.errors import GateFailed, TreefuseError
from treefuse.export.verify import check_figures, recorded_checks, verify_staged
from treefuse.files import atomic_path, check_output_path, is_staging_debris
from treefuse.formats import Format, format_of, resolve
from treefuse.sidecar import write_sidecar

MIN_SIDE = 2  # the 3x3 dilation-4 convolutions need a few pixels; any runtime accepts 2x2 and up


@dataclass(frozen=True)
class ExportRequest:
    """What to export: from what, to where, at which precision, judged on which images."""

    kind: str
    source: Path  # treefuse weights, or an ONNX model for formats whose row says source="onnx"
    out: Path
    precision: str
    calibration: Any = None  # a calibration set folder (or a loaded set): activation ranges for post-training INT8
    paired_images: Path | None = None  # rain/ + clean/: export's own check judges the task PSNR on them
    qat_run: Path | None = None  # a `treefuse qat` run whose learned weights and scales are written as they are
    min_hw: tuple[int, int] | None = None  # shape options, as the row's Shape style takes them
    max_hw: tuple[int, int] | None = None
    size: tuple[int, int] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)  # the format's own options (e.g. ONNX's opset)
    keep_missed: bool = False  # on a miss, keep what missed as `m.missed.pte` (for `treefuse diff`); exit still 1

    @property
    def row(self) -> Format:
        return format_of(self.kind)

    def reference_weights(self) -> Path:
        """The FP32 weights the artifact is judged against: the source, or a QAT run's own source weights."""
        if self.qat_run is not None and Path(self.qat_run).is_dir():
            from treefuse.export.observed_qat import source_weights

            return source_weights(self.qat_run)
        return Path(self.source)


@dataclass(frozen=True)
class Converted:
    """What a conversion made at the staged path: how the pipeline judges it, what it records, what it says."""

    summary: str  # what was written, for the printed line: "int8, XNNPACK, inputs 16x16 .. 256x256"
    calibration: Path | None = None  # calibration images the check may judge on when no paired images are given
    hw_range: tuple[tuple[int, int], tuple[int, int]] | None = None  # the input sizes the artifact accepts
    advice: str = ""  # what to try when the artifact misses its gates
    sidecar: tuple[dict[str, str], dict[str, Any]] | None = None  # (metadata, provenance) for a format with no
    # metadata field of its own; the pipeline adds the check's verdict to the provenance
    verdict: dict[str, Any] | None = None  # set when the conversion judged itself (ONNX INT8 against FP32 ONNX)
    notes: tuple[str, ...] = ()  # more lines to print, after the written line


def check_hw_range(min_hw: tuple[int, int], max_hw: tuple[int, int]) -> None:
    """Refuse an empty or too small height/width range."""
    if min(min_hw) < MIN_SIDE or any(low > high for low, high in zip(min_hw, max_hw)):
        raise TreefuseError(f"size range {min_hw[0]}x{min_hw[1]} .. {max_hw[0]}x{max_hw[1]} is empty or below "
                            f"{MIN_SIDE}x{MIN_SIDE}; give --min-size no larger than --max-size")


def check_request(request: ExportRequest) -> None:
    """Refuse, in one line, a request the exporter could only fail on later: the row decides what is valid."""
    row = request.row
    if row.exporter is None:
        raise TreefuseError(f"{row.kind} is run, not exported, by treefuse; export its source format instead")
    if request.precision not in row.precision_names:
        raise TreefuseError(f"unsupported {row.kind} precision {request.precision!r}; "
                            f"choose one of {', '.join(row.precision_names)}")
    _check_out(row, request.out)
    precision = row.precision(request.precision)
    if request.qat_run is not None:
        if precision.scheme is None:
            quantized = [p.name for p in row.precisions if p.scheme]
            raise TreefuseError(f"--qat RUN_DIR writes a quantized model; choose --precision {' or '.join(quantized)}"
                                if quantized else f"{row.kind} has no quantized precision to take --qat")
        if request.calibration is not None:
            raise TreefuseError("--qat RUN_DIR holds its own learned scales: drop --calib")
    elif precision.calibrated and request.calibration is None:
        raise TreefuseError(f"{request.precision} needs a calibration set: pass --calib CALIB_DIR (build one with "
                            "`treefuse calib build`) or --qat RUN_DIR")
    elif not precision.calibrated and request.calibration is not None:
        calibrated = [p.name for p in row.precisions if p.calibrated]
        raise TreefuseError(f"--calib is only used by {' and '.join(calibrated) or 'quantized precisions'}, "
                            f"not by {request.precision}; drop it")
    if request.min_hw is not None and request.max_hw is not None:
        check_hw_range(request.min_hw, request.max_hw)
    if request.size is not None and min(request.size) < 8:
        raise TreefuseError(f"--size {request.size[0]}x{request.size[1]} is too small to convert at; "
                            "use 8x8 or more (e.g. 256x256)")
    if isinstance(request.calibration, (str, Path)):
        from treefuse.calib.store import load_calibration_set

        load_calibration_set(request.calibration)  # a bad set is refused before minutes of conversion
    if request.paired_images is not None:
        from treefuse.images import paired_images

        paired_images(request.paired_images)


def _check_out(row: Format, out: Path) -> None:
    if out.suffix != row.suffix:
        raise TreefuseError(f"{row.kind} output must end in {row.suffix}, got {out.name}")
    if row.is_folder:
        if out.exists() and not out.is_dir():
            raise TreefuseError(f"{out} is a file; choose a {row.suffix} package path for --out")
        same_kind = _same_kind(row)
        if out.is_dir() and any(out.iterdir()) and same_kind is not None and not same_kind(out):
            raise TreefuseError(f"{out} exists and is not a {row.kind} package (no {row.package_marker}); nothing "
                                "was touched: remove it or choose another --out")
        return
    if out.is_dir():
        raise TreefuseError(f"{out} is a folder; choose a {row.suffix} file path for --out")
    check_output_path(out)


def run_export(request: ExportRequest) -> str:
    """Check, stage, convert, judge, record, move into place; returns the lines to print."""
    check_request(request)
    row = request.row
    convert = resolve(row.exporter)  # type: ignore[arg-type]
    _warn_of_overlap(request)
    with recorded_checks() as checks, \
            atomic_path(request.out, directory=row.is_folder, same_kind=_same_kind(row)) as staged:
        try:
            made: Converted = convert(request, staged)
        except GateFailed as miss:  # a conversion that judges itself (ONNX INT8, TensorRT) writes nothing on a miss
            if request.keep_missed:
                raise GateFailed(f"{miss} (--keep-missed: this {row.kind} {request.precision} export judges itself "
                                 "before it writes, so there is nothing to keep)") from None
            raise
        if made.sidecar is not None:  # before the check too: a runner may read its artifact's record (RKNN's recipe)
            write_sidecar(staged, *made.sidecar)
        try:
            verdict = made.verdict or verify_staged(row.kind, staged, request.reference_weights(), request.precision,
                                                    made.calibration, request.paired_images, made.hw_range, made.advice)
        except GateFailed as miss:
            if request.keep_missed:
                kept = _keep_missed(staged, request.out, row, made, checks[-1])
                raise GateFailed(f"{miss} ({request.out} untouched; what missed is kept as {kept}, with its "
                                 "verdict, for `treefuse diff`)") from None
            raise
        if made.sidecar is not None:
            metadata, record = made.sidecar
            write_sidecar(staged, metadata, {**record, "verification": verdict})
        companions = sorted(path.name for path in staged.parent.iterdir() if path != staged and path.name[:1] != ".")
    written = f"{request.out} with {', '.join(companions)}" if companions else str(request.out)
    return "\n".join([f"wrote {written} ({made.summary})", *made.notes, check_figures(verdict)])


def _keep_missed(staged: Path, out: Path, row: Format, made: Converted, verdict: dict[str, Any]) -> Path:
    """Copy the staged artifact and its companions to `<stem>.missed<suffix>` (never over --out); returns its path."""
    missed = out.with_name(f"{out.stem}.missed{out.suffix}")
    with atomic_path(missed, directory=row.is_folder, same_kind=_same_kind(row)) as target:
        for source in staged.parent.iterdir():
            if is_staging_debris(source):  # what atomic_path would have moved, and nothing else
                continue
            place = target if source == staged else target.with_name(missed.stem + source.name[len(out.stem):])
            if source.is_dir():
                shutil.copytree(source, place, dirs_exist_ok=True)
            else:
                shutil.copyfile(source, place)
        if made.sidecar is not None:  # the record says what was judged, and that it missed
            metadata, record = made.sidecar
            write_sidecar(target, metadata, {**record, "verification": verdict})
    return missed


def _warn_of_overlap(request: ExportRequest) -> None:
    """A QAT run judged on pairs it trained on: said before the check, as a miss on them needs it as much as a pass."""
    if request.qat_run is not None and request.paired_images is not None:
        from treefuse.overlap import overlap_warning

        warning = overlap_warning(request.qat_run, request.paired_images)
        if warning:
            print(warning, flush=True)


def _same_kind(row: Format):
    """For a package format: whether a folder already at --out is one of its packages (and so may be replaced)."""
    if not row.is_folder or row.package_marker is None:
        return None
    return lambda folder: (folder / row.package_marker).is_file()  # type: ignore[operator]
