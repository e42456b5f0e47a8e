"""W8A8 for Core ML on Linux: coremltools' torch-side LinearQuantizer, calibrated, then finalized.

coremltools' post-training activation quantizer calls Core ML `predict` to collect
statistics, which only exists on macOS. The torch-side quantizer observes activations
in PyTorch instead: prepare -> calibration forward passes -> finalize, then trace.
"""
from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

import torch
from torch import nn

from treefuse.export.calibration_images import CalibrationImages
from treefuse.export.float_layers import FLOAT_MODULES
from treefuse.optional import import_optional

CALIBRATION_BATCH = 4


def linear_quantizer(folded: nn.Module, milestones: list[int]) -> Any:
    """coremltools' LinearQuantizer for w8a8 (symmetric, the float modules left out), as PTQ and QAT both use it."""
    # coremltools warns on import about torch and scikit-learn versions it does not convert here.
    coreml_quant = import_optional("coremltools.optimize.torch.quantization", "coreml: coremltools", "coreml")
    config = coreml_quant.LinearQuantizerConfig(global_config=coreml_quant.ModuleLinearQuantizerConfig(
        quantization_scheme="symmetric", milestones=milestones),
        module_name_configs={name: None for name in FLOAT_MODULES})
    return coreml_quant.LinearQuantizer(folded, config)


@contextlib.contextmanager
def torch_ao_quiet() -> Iterator[None]:
    """coremltools' quantizer is built on torch.ao's FX quantization, which torch marks deprecated; it still works."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated", category=DeprecationWarning)
        yield


def quantize_w8a8(folded: nn.Module, calibration: CalibrationImages, example: torch.Tensor) -> nn.Module:
    """The folded model with 8-bit weights and activations, ranges observed on `calibration`."""
    from torch.ao import quantization as ao_quantization

    # milestones: observers on at step 0, fake quantization only after calibration (step "never").
    quantizer = linear_quantizer(folded, [0, 1 << 30, 1 << 30, 1 << 30])
    with torch_ao_quiet():
        prepared = quantizer.prepare(example_inputs=(example,))
    quantizer.step()
    prepared.eval()
    with torch.no_grad():
        for start in range(0, len(calibration.images), CALIBRATION_BATCH):
            prepared(torch.tensor(calibration.images[start:start + CALIBRATION_BATCH]))
    prepared.apply(ao_quantization.disable_observer)
    prepared.apply(ao_quantization.enable_fake_quant)
    with torch_ao_quiet():
        return quantizer.finalize(inplace=True).eval()
