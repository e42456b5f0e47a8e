"""What every INT8 layout (ONNX Runtime's and TensorRT's) takes from ONNX Runtime's quantization tool."""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

from treefuse.errors import TreefuseError

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


@contextlib.contextmanager
def quiet_quantizer() -> Iterator[None]:
    # ORT's quantizer logs "please pre-process" warnings on the root logger for every call.
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    if name not in CALIBRATION_METHODS:
        raise TreefuseError(f"--calib-method must be one of {CALIBRATION_METHODS}, got {name!r}")
    return {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
            "percentile": CalibrationMethod.Percentile}[name]
