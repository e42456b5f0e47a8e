"""XNNPACK INT8 quantization-aware training: PT2E's QAT flow, one run for ExecuTorch and LiteRT.

`prepare_qat_pt2e` with ExecuTorch's XNNPACKQuantizer and its QAT config
(`get_symmetric_quantization_config(is_per_channel=True, is_qat=True)`) puts a fake-quantizer at
every place XNNPACK quantizes: s8 affine per-tensor activations in [-128, 127], s8 symmetric
per-channel weights in [-127, 127]; the across-block fuse tree stays float, as in the post-training
export (export/pt2e/float_nodes.py). The run starts from post-training ranges (observers fed the
calibration set, saved as RUN/base/start.safetensors); training moves the weights, and the observers
track the ranges until the recipe freezes them. `convert_pt2e` of the learned network writes those
exact weights and scales as quantize/dequantize ops, which ExecuTorch lowers to XNNPACK and LiteRT's
converter turns into its own INT8 ops: nothing is re-calibrated.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from treefuse.checkpoint import load_weights
from treefuse.export.observed_qat import calibrate, load_learned, load_start, save_start, source_weights
from treefuse.folding import fold
from treefuse.optional import import_optional

TARGET = "xnnpack-int8"
EXAMPLE_BATCH, EXAMPLE_HW = 2, (64, 64)  # batch 2: a batch of 1 would be specialized away by torch.export
MAX_BATCH, MIN_SIDE, MAX_SIDE = 256, 8, 4096


def xnnpack_qat_quantizer() -> Any:
    """ExecuTorch's XNNPACKQuantizer with its QAT config, annotating only nodes outside the float modules."""
    from treefuse.export.pt2e.float_nodes import outside_modules

    xnnpack = import_optional("executorch.backends.xnnpack.quantizer.xnnpack_quantizer",
                              "executorch: ExecuTorch's XNNPACK quantizer", "executorch")
    config = xnnpack.get_symmetric_quantization_config(is_per_channel=True, is_qat=True)
    quantizer = xnnpack.XNNPACKQuantizer().set_global(config)
    quantizer.set_filter_function(outside_modules())
    return quantizer


def prepare_network(weights_path: str | Path, quantizer: Any = None) -> torch.fx.GraphModule:
    """The folded network of `weights_path`, exported (dynamic batch, height, width) and prepared for QAT."""
    from torch.export import Dim

    # torchao warns on import about CUDA kernels a CPU build lacks: imported quietly.
    prepare_qat_pt2e = import_optional("torchao.quantization.pt2e.quantize_pt2e", "torchao", "executorch").prepare_qat_pt2e

    loaded = load_weights(weights_path)
    example = torch.rand(EXAMPLE_BATCH, loaded.config.in_channels, *EXAMPLE_HW,
                         generator=torch.Generator().manual_seed(0))
    dynamic = {"x": {0: Dim("batch", min=1, max=MAX_BATCH), 2: Dim("height", min=MIN_SIDE, max=MAX_SIDE),
                     3: Dim("width", min=MIN_SIDE, max=MAX_SIDE)}}
    program = torch.export.export(fold(loaded.model), (example,), dynamic_shapes=dynamic)
    return prepare_qat_pt2e(program.module(), quantizer if quantizer is not None else xnnpack_qat_quantizer())


def make_start(weights_path: str | Path, calib_dir: str | Path, run_dir: str | Path) -> dict[str, Any]:
    """Prepare, calibrate and save RUN/base/start.safetensors; returns facts for qat.json."""
    from treefuse.export.calibration_images import calibration_from

    images = calibration_from(calib_dir)
    network = prepare_network(weights_path)
    calibrate(network, images.images)
    return save_start(network, run_dir, calib_dir, images.sha256,
                      "minmax over the whole set (PT2E's QAT observers, which then average batch ranges)")


def load_network(run_dir: str | Path, quantizer: Any = None) -> torch.fx.GraphModule:
    """A run's prepared network at its starting values."""
    network = prepare_network(source_weights(run_dir), quantizer)
    load_start(network, run_dir)
    return network


def converted_from_run(run_dir: str | Path, quantizer: Any = None,
                       fold_quantize: bool = True) -> tuple[torch.fx.GraphModule, dict[str, str]]:
    """`convert_pt2e` of the learned network: the learned weights and scales as quantize/dequantize ops."""
    convert_pt2e = import_optional("torchao.quantization.pt2e.quantize_pt2e", "torchao", "executorch").convert_pt2e
    network = load_network(run_dir, quantizer)
    metadata = load_learned(network, run_dir)
    return convert_pt2e(as_trained(network), fold_quantize=fold_quantize), metadata


def as_trained(network: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """`network` whose fake-quantizers give convert_pt2e the scales and zero points they trained with.

    convert_pt2e asks each one's observer (calculate_qparams); XNNPACK's fused fake-quantizer trained with
    its own buffers, which differ from that (per-channel weight scales by 255/254, some activation scales
    in the last bit), so the program would not be the network the run learned."""
    for module in network.modules():
        if hasattr(module, "fake_quant_enabled") and hasattr(module, "calculate_qparams"):
            module.calculate_qparams = functools.partial(_trained_qparams, module)
    return network


def _trained_qparams(fake_quantizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return fake_quantizer.scale.detach().clone(), fake_quantizer.zero_point.detach().long()


def program_from_run(run_dir: str | Path, example: torch.Tensor, dynamic: dict[str, Any] | None
                     ) -> tuple[Any, dict[str, Any]]:
    """The learned network converted and re-exported at the artifact's shapes, and the run's provenance record."""
    from treefuse.qat_run import learned_record, require_target

    settings = require_target(run_dir, TARGET)
    converted, metadata = converted_from_run(run_dir)
    program = torch.export.export(converted, (example,), dynamic_shapes=dynamic)
    return program, learned_record(run_dir, settings, metadata)
