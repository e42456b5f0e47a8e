"""Calibration images as the torch-side quantizers (Core ML w8a8, PT2E) take them: checked, with their hash."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.errors import TreefuseError


@dataclass(frozen=True)
class CalibrationImages:
    """Images (N x 3 x H x W float32 in [0, 1]) that activation ranges are observed on, and their hash."""

    images: np.ndarray
    sha256: str


def calibration_from(source: Any) -> CalibrationImages:
    """A calibration set folder (treefuse calib format) or any object with .images and .sha256."""
    if isinstance(source, (str, Path)):
        from treefuse.calib.store import load_calibration_set

        source = load_calibration_set(source)
    images = np.asarray(source.images)
    if images.ndim != 4 or images.shape[1] != 3 or images.shape[0] < 1 or images.dtype != np.float32:
        raise TreefuseError(f"calibration images must be a non-empty N x 3 x H x W float32 array, "
                            f"got {images.dtype} {images.shape}; rebuild the set with `treefuse calib build`")
    if not np.isfinite(images).all():
        raise TreefuseError("calibration images hold NaN or Inf values; rebuild the set with `treefuse calib build`")
    return CalibrationImages(images, str(source.sha256))
