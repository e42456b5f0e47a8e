"""What the ExecuTorch layers-program tests share: a tiny program exported with its layers program."""
from __future__ import annotations

import types
from pathlib import Path

import numpy as np

RANGE = dict(min_hw=(16, 16), max_hw=(64, 64))  # a small planned maximum keeps the runtime's memory small


def calibration_set() -> types.SimpleNamespace:
    """Four random 32x32 images, as a loaded calibration set."""
    images = np.random.default_rng(3).random((4, 3, 32, 32), dtype=np.float32)
    return types.SimpleNamespace(images=images, sha256="c" * 64)


def program_with_layers(weights: Path, folder: Path, precision: str = "fp32") -> Path:
    """`m.PRECISION.pte` and `m.PRECISION.layers.pte` of `weights` in `folder`, exported as `--layers` asks;
    returns the program's path."""
    from treefuse.export.request import ExportRequest, run_export

    calibration = calibration_set() if precision == "int8" else None
    program = folder / f"m.{precision}.pte"
    run_export(ExportRequest("executorch", weights, program, precision, calibration, options={"layers": True},
                             **RANGE))
    return program
