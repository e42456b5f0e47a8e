"""Core ML w8a8 quantization-aware training: coremltools' LinearQuantizer, trained instead of only calibrated.

The same quantizer as the post-training w8a8 export (export/coreml/w8a8.py: symmetric 8-bit
weights per channel and 8-bit activations, the across-block fuse tree left float), prepared on
the folded network. The run starts from its post-training ranges (RUN/base/start.safetensors);
training moves the weights while the observers track the ranges until the recipe freezes them.
Export loads the learned state into a freshly prepared network, finalizes it (coremltools writes
the learned weights and scales as quantize/dequantize ops) and converts it as the PTQ export does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from treefuse.checkpoint import load_weights
from treefuse.export.observed_qat import calibrate, load_learned, load_start, save_start, source_weights
from treefuse.folding import fold

TARGET = "coreml-w8a8"
EXAMPLE_HW = (64, 64)
QAT_MILESTONES = [0, 0, 1 << 30, 1 << 30]  # observers and rounding from step 0; the recipe freezes observers itself


def prepare_network(weights_path: str | Path) -> tuple[Any, torch.nn.Module]:
    """The LinearQuantizer and the folded network of `weights_path` it prepared for QAT."""
    from treefuse.export.coreml.w8a8 import linear_quantizer, torch_ao_quiet

    loaded = load_weights(weights_path)
    example = torch.rand(1, loaded.config.in_channels, *EXAMPLE_HW, generator=torch.Generator().manual_seed(0))
    quantizer = linear_quantizer(fold(loaded.model), QAT_MILESTONES)
    with torch_ao_quiet():
        prepared = quantizer.prepare(example_inputs=(example,))
    return quantizer, prepared


def make_start(weights_path: str | Path, calib_dir: str | Path, run_dir: str | Path) -> dict[str, Any]:
    """Prepare, calibrate and save RUN/base/start.safetensors; returns facts for qat.json."""
    from treefuse.export.calibration_images import calibration_from

    images = calibration_from(calib_dir)
    _, network = prepare_network(weights_path)
    calibrate(network, images.images)
    return save_start(network, run_dir, calib_dir, images.sha256,
                      "minmax over the whole set (coremltools' observers, which then average batch ranges)")


def load_network(run_dir: str | Path) -> torch.nn.Module:
    """A run's prepared network at its starting values."""
    _, network = prepare_network(source_weights(run_dir))
    load_start(network, run_dir)
    return network


def finalized_from_run(run_dir: str | Path) -> tuple[torch.nn.Module, dict[str, str]]:
    """The learned network finalized by coremltools (quantize/dequantize ops with the learned scales), ready to trace."""
    quantizer, network = prepare_network(source_weights(run_dir))
    load_start(network, run_dir)
    metadata = load_learned(network, run_dir)
    from treefuse.export.coreml.w8a8 import torch_ao_quiet

    with torch_ao_quiet():
        return quantizer.finalize(network, inplace=True).eval(), metadata
