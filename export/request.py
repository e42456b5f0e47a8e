"""One export request, checked against its format's row before any work, and handed to the row's exporter.

Every exporter has one signature, `export(request: ExportRequest) -> str` (the line to print), so
the CLI and `treefuse benchmark` reach any format through the table alone.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from treefuse.errors import TreefuseError
from treefuse.formats import Format, format_of, resolve

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

    @property
    def row(self) -> Format:
        return format_of(self.kind)


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
    from treefuse.files import check_output_path

    if out.suffix != row.suffix:
        raise TreefuseError(f"{row.kind} output must end in {row.suffix}, got {out.name}")
    if row.is_folder:
        if out.exists() and not out.is_dir():
            raise TreefuseError(f"{out} is a file; choose a {row.suffix} package path for --out")
        return
    if out.is_dir():
        raise TreefuseError(f"{out} is a folder; choose a {row.suffix} file path for --out")
    check_output_path(out)


def run_export(request: ExportRequest) -> str:
    """Check the request against its row, then run the row's exporter; returns the line to print."""
    from treefuse.export.verify import check_figures, recorded_checks

    check_request(request)
    if request.qat_run is not None and request.paired_images is not None:
        from treefuse.overlap import overlap_warning

        warning = overlap_warning(request.qat_run, request.paired_images)
        if warning:
            print(warning, flush=True)  # before the check: a miss on such pairs needs it as much as a pass
    with recorded_checks() as checks:
        line = resolve(request.row.exporter)(request)  # type: ignore[arg-type]
    # every format prints what its own check measured, however its exporter words the rest
    return line if not checks or "checked on" in line else f"{line}\n{check_figures(checks[-1])}"
