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

# (kind, precision) in the order the table shows them.
DEFAULT_MATRIX: tuple[tuple[str, str], ...] = (
    ("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"), ("openvino", "int8"),
    ("executorch", "fp32"), ("executorch", "int8"), ("litert", "fp32"), ("litert", "fp16"), ("litert", "int8"),
    ("trt", "fp16"), ("trt", "int8"), ("coreml", "fp16"))
# Why a format is listed but not exported by the benchmark even when its package is installed.
NOT_BENCHMARKED = {
    "trt": "TensorRT engines are built on the GPU that runs them: `treefuse export trt` there (docs/tensorrt.md)",
    "coreml": "Core ML runs on Apple devices; its Linux evaluator checks parity, its speed is not Core ML's",
}


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def export_matrix(weights: Path, out_dir: Path, size: tuple[int, int], calib: Path | None,
                  matrix: tuple[tuple[str, str], ...] = DEFAULT_MATRIX,
                  log: Callable[[str], None] = print) -> list[Cell]:
    """Export each (kind, precision) of `matrix` into `out_dir`; a cell that cannot be made says why.

    `size` is the largest input any artifact must take (formats with a fixed upper bound plan for it)."""
    from treefuse.checkpoint import load_weights

    source_sha256 = load_weights(weights).sha256
    calib_sha256 = _calibration_sha256(calib)
    out_dir.mkdir(parents=True, exist_ok=True)  # only once the inputs are known good: a refusal writes nothing
    cells: list[Cell] = []
    failed: dict[Path, str] = {}  # OpenVINO runs the ONNX files: one failed export is not tried twice
    for kind, precision in matrix:
        reason = _unavailable(kind, precision, calib) or failed.get(out_dir / _file_name(kind, precision))
        if reason:
            cells.append(Cell(kind, precision, reason=reason))
            log(f"{kind} {precision}: not run ({reason})")
            continue
        path = out_dir / _file_name(kind, precision)
        spec = f"{kind}:{path}"
        expected_calib = calib_sha256 if precision == "int8" else None
        if _is_reusable(spec, precision, source_sha256, expected_calib):
            cells.append(Cell(kind, precision, spec, str(path), reused=True))
            log(f"{kind} {precision}: reusing {path}")
            continue
        log(f"{kind} {precision}: exporting {path} ...")
        start = time.perf_counter()
        try:
            EXPORTERS[kind](weights, path, precision, calib, size)
        except (TreefuseError, GateFailed) as exc:  # one format failing must not hide the others' figures
            what = "export refused by its own gate" if isinstance(exc, GateFailed) else "export failed"
            failed[path] = f"{what}: {exc}"
            cells.append(Cell(kind, precision, reason=failed[path]))
            log(f"{kind} {precision}: {what} ({exc})")
            continue
        cells.append(Cell(kind, precision, spec, str(path), export_s=round(time.perf_counter() - start, 1)))
    return cells


def _unavailable(kind: str, precision: str, calib: Path | None) -> str | None:
    from treefuse.formats import FORMATS_BY_KIND

    if kind not in FORMATS_BY_KIND:
        return f"unknown format {kind!r}"
    if precision not in FORMATS_BY_KIND[kind].precisions:
        return f"{kind} has no {precision} precision"
    reason = FORMATS_BY_KIND[kind].unavailable_reason()
    if kind == "trt" and not reason:
        import torch

        reason = None if torch.cuda.is_available() else "needs an NVIDIA GPU; none here"
    if reason or kind in NOT_BENCHMARKED:
        return reason or NOT_BENCHMARKED[kind]
    if kind == "litert":
        from treefuse.export.pt2e.litert import converter_python

        try:
            converter_python()
        except TreefuseError as exc:
            return str(exc)
    if precision == "int8" and calib is None:
        return "int8 needs a calibration set: pass --calib"
    return None


def _calibration_sha256(calib: Path | None) -> str | None:
    if calib is None:
        return None
    from treefuse.calib.store import load_calibration_set

    return load_calibration_set(calib).sha256


def _file_name(kind: str, precision: str) -> str:
    from treefuse.formats import FORMATS_BY_KIND

    source_kind = "onnx" if kind == "openvino" else kind  # OpenVINO runs the ONNX files
    return f"model.{precision}{FORMATS_BY_KIND[source_kind].suffix}"


def _is_reusable(spec: str, precision: str, source_sha256: str, calibration_sha256: str | None) -> bool:
    from treefuse.runtimes.backends.registry import make_runner

    try:
        record = make_runner(spec).artifact()
    except TreefuseError:
        return False
    return (record.source_sha256 == source_sha256 and record.precision == precision
            and (calibration_sha256 is None or record.calibration_sha256 == calibration_sha256))


def _onnx(weights: Path, path: Path, precision: str, calib: Path | None, size: tuple[int, int]) -> None:
    from treefuse.export.onnx.chains import Int8OnnxFromOnnx, OnnxFromWeights

    # The same chain as `treefuse export onnx`: int8 is checked against its gates and refused if it misses them.
    fp32 = OnnxFromWeights(weights)
    (fp32 if precision == "fp32" else Int8OnnxFromOnnx(fp32, calib))(path)


def _openvino(weights: Path, path: Path, precision: str, calib: Path | None, size: tuple[int, int]) -> None:
    if not _is_reusable(f"onnx:{path}", precision, _sha(weights), _calibration_sha256(calib) if calib else None):
        _onnx(weights, path, precision, calib, size)


def _sha(weights: Path) -> str:
    from treefuse.checkpoint import load_weights

    return load_weights(weights).sha256


def _executorch(weights: Path, path: Path, precision: str, calib: Path | None, size: tuple[int, int]) -> None:
    from treefuse.export.pt2e.executorch import export_executorch

    export_executorch(weights, path, precision, calib if precision == "int8" else None, max_hw=size)


def _litert(weights: Path, path: Path, precision: str, calib: Path | None, size: tuple[int, int]) -> None:
    from treefuse.export.pt2e.litert import export_litert

    export_litert(weights, path, precision, calib if precision == "int8" else None, size=size)


EXPORTERS: dict[str, Callable[[Path, Path, str, Path | None, tuple[int, int]], None]] = {
    "onnx": _onnx, "openvino": _openvino, "executorch": _executorch, "litert": _litert}
