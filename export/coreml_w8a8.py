"""W8A8 for Core ML on Linux: coremltools' torch-side LinearQuantizer, calibrated, then finalized.

coremltools' post-training activation quantizer calls Core ML `predict` to collect
statistics, which only exists on macOS. The torch-side quantizer observes activations
in PyTorch instead: prepare -> calibration forward passes -> finalize, then trace.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from treefuse.errors import TreefuseError

CALIBRATION_BATCH = 4
# Left in float (FP16 in the package): the across-block fuse tree concatenates block outputs
# whose ranges differ widely, so one 8-bit scale per concat loses the small ones. Measured on
# the shipped weights (2 heavy-rain-sample5 images, torch-side fake quantization): output PSNR
# vs float 24.2 dB with everything quantized, 41.7 dB with these fuses in float; skipping the
# head, the blocks or the tail instead left it at ~24 dB. They are 7 of the network's 1x1 convs.
FLOAT_MODULES = ("across_fuses",)


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


def quantize_w8a8(folded: nn.Module, calibration: CalibrationImages, example: torch.Tensor) -> nn.Module:
    """The folded model with 8-bit weights and activations, ranges observed on `calibration`."""
    from coremltools.optimize.torch.quantization import (LinearQuantizer, LinearQuantizerConfig,
                                                         ModuleLinearQuantizerConfig)
    from torch.ao import quantization as ao_quantization

    # milestones: observers on at step 0, fake quantization only after calibration (step "never").
    config = LinearQuantizerConfig(global_config=ModuleLinearQuantizerConfig(
        quantization_scheme="symmetric", milestones=[0, 1 << 30, 1 << 30, 1 << 30]),
        module_name_configs={name: None for name in FLOAT_MODULES})
    quantizer = LinearQuantizer(folded, config)
    prepared = quantizer.prepare(example_inputs=(example,))
    quantizer.step()
    prepared.eval()
    with torch.no_grad():
        for start in range(0, len(calibration.images), CALIBRATION_BATCH):
            prepared(torch.tensor(calibration.images[start:start + CALIBRATION_BATCH]))
    prepared.apply(ao_quantization.disable_observer)
    prepared.apply(ao_quantization.enable_fake_quant)
    return quantizer.finalize(inplace=True).eval()
