"""The checks a single-file exporter makes before any work: precision, suffix, output kind, calibration."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from treefuse.errors import TreefuseError


def check_export_request(what: str, suffix: str, precisions: Iterable[str], out_path: Path, precision: str,
                         calibration: Any) -> None:
    """Refuse, in one line, a request `what` (e.g. "ExecuTorch") could only fail later; INT8 alone takes --calib."""
    precisions = list(precisions)
    if precision not in precisions:
        raise TreefuseError(f"unsupported {what} precision {precision!r}; choose one of {', '.join(precisions)}")
    if out_path.suffix != suffix:
        raise TreefuseError(f"{what} output must end in {suffix}, got {out_path.name}")
    if out_path.is_dir():
        raise TreefuseError(f"{out_path} is a folder; choose a {suffix} file path for --out")
    if precision == "int8" and calibration is None:
        raise TreefuseError("int8 needs a calibration set: pass --calib CALIB_DIR (build one with `treefuse calib build`)")
    if precision != "int8" and calibration is not None:
        raise TreefuseError(f"--calib is only used by int8, not by {precision}; drop it or choose int8")
