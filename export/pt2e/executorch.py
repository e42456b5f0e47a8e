"""Weights -> ExecuTorch program (.pte) lowered to the XNNPACK delegate, FP32 or INT8 (PT2E).

Height and width are dynamic between a declared minimum and maximum (ExecuTorch plans
its memory for the maximum). A .pte has no metadata field, so provenance goes into a
hashed sidecar (`m.pte.json`). The program is loaded and run by ExecuTorch's own runtime
before it is moved into place.
"""
from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from treefuse.artifact import artifact_metadata
from treefuse.checkpoint import load_weights
from treefuse.errors import TreefuseError, one_line
from treefuse.export.request import check_export_request
from treefuse.files import atomic_path
from treefuse.folding import fold
from treefuse.optional import import_optional
from treefuse.provenance import provenance, tool_versions
from treefuse.sidecar import write_sidecar

PRECISIONS = {"fp32": "FP32 weights and compute (XNNPACK)",
              "int8": "8-bit weights (per-channel symmetric) and activations, PT2E XNNPACKQuantizer, calibrated"}
DEFAULT_MIN_HW, DEFAULT_MAX_HW = (16, 16), (1088, 1920)
TOOLS = ("treefuse", "torch", "executorch", "torchao", "numpy")


def import_executorch() -> Any:
    """ExecuTorch's exporter (exir), or one line naming the extra to install."""
    return import_optional("executorch.exir", "executorch: ExecuTorch's exporter", "executorch")


def check_hw_range(min_hw: tuple[int, int], max_hw: tuple[int, int]) -> None:
    """Refuse an empty or too small height/width range (the 3x3 dilation-4 convs need a few pixels)."""
    if min(min_hw) < 2 or any(low > high for low, high in zip(min_hw, max_hw)):
        raise TreefuseError(f"size range {min_hw[0]}x{min_hw[1]} .. {max_hw[0]}x{max_hw[1]} is empty or below 2x2; "
                            "give --min-size no larger than --max-size")


def export_executorch(weights_path: str | Path, out_path: str | Path, precision: str = "fp32",
                      calibration: Any = None, min_hw: tuple[int, int] = DEFAULT_MIN_HW,
                      max_hw: tuple[int, int] = DEFAULT_MAX_HW) -> Path:
    """Export treefuse weights to an XNNPACK-lowered .pte at `out_path` plus its sidecar; returns the path."""
    out_path = Path(out_path)
    _check_request(out_path, precision, calibration, min_hw, max_hw)
    import_executorch()
    loaded = load_weights(weights_path)
    network = fold(loaded.model)
    example = torch.rand(1, loaded.config.in_channels, *_example_hw(min_hw, max_hw),
                         generator=torch.Generator().manual_seed(0))
    dynamic = _dynamic_shapes(min_hw, max_hw)
    calibration_sha256 = None
    with _quiet():
        program = torch.export.export(network, (example,), dynamic_shapes=dynamic)
        if precision == "int8":
            from treefuse.export.calibration_images import calibration_from

            images = calibration_from(calibration)
            program = _quantize_int8(program, images.images, example, dynamic)
            calibration_sha256 = images.sha256
        buffer = _lower(program)
    record = provenance(config=loaded.config.to_dict(), source_checkpoint=str(weights_path),
                        source_sha256=loaded.sha256, precision=precision, precision_detail=PRECISIONS[precision],
                        delegate="XNNPACK", min_hw=list(min_hw), max_hw=list(max_hw), folded=True,
                        calibration_sha256=calibration_sha256, tool_versions=tool_versions(TOOLS))
    metadata = artifact_metadata(format="executorch", precision=precision, config=loaded.config.to_dict(),
                                 source_sha256=loaded.sha256, calibration_sha256=calibration_sha256, target="XNNPACK")
    with atomic_path(out_path) as staged:
        staged.write_bytes(buffer)
        _run_once(staged, loaded.config.in_channels, min_hw)
    write_sidecar(out_path, metadata, record)
    return out_path


def _check_request(out_path: Path, precision: str, calibration: Any, min_hw: tuple[int, int],
                   max_hw: tuple[int, int]) -> None:
    check_export_request("ExecuTorch", ".pte", PRECISIONS, out_path, precision, calibration)
    check_hw_range(min_hw, max_hw)


def _example_hw(min_hw: tuple[int, int], max_hw: tuple[int, int]) -> tuple[int, int]:
    return tuple(min(max(low, 64), high) for low, high in zip(min_hw, max_hw))  # type: ignore[return-value]


def _dynamic_shapes(min_hw: tuple[int, int], max_hw: tuple[int, int]) -> dict[str, dict[int, Any]]:
    from torch.export import Dim

    height = Dim("height", min=min_hw[0], max=max_hw[0])
    width = Dim("width", min=min_hw[1], max=max_hw[1])
    return {"x": {2: height, 3: width}}


def _quantize_int8(program: Any, images: np.ndarray, example: torch.Tensor, dynamic: dict[str, Any]) -> Any:
    """PT2E: annotate for XNNPACK, observe the calibration images, convert, re-export."""
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (XNNPACKQuantizer,
                                                                        get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    from treefuse.export.pt2e.float_nodes import outside_modules

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    quantizer.set_filter_function(outside_modules())  # the across-block fuse tree stays FP32
    prepared = prepare_pt2e(program.module(), quantizer)
    with torch.no_grad():
        for image in images:  # one at a time: the exported batch size is 1
            prepared(torch.tensor(image[None]))  # a copy: the set is read-only
    converted = convert_pt2e(prepared)
    return torch.export.export(converted, (example,), dynamic_shapes=dynamic)


def _lower(program: Any) -> bytes:
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    except Exception as exc:  # a lowering failure is an unsupported torch/executorch pairing, stated in one line
        raise TreefuseError(f"ExecuTorch could not lower the model ({one_line(exc)[:200]}); "
                            "check the executorch version against pyproject's executorch extra") from None
    return bytes(lowered.buffer)


def _run_once(path: Path, channels: int, min_hw: tuple[int, int]) -> None:
    """Load the written program with ExecuTorch's runtime and run the smallest input it accepts."""
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(str(path)).load_method("forward")
    output = method.execute([torch.zeros(1, channels, *min_hw)])[0]
    if tuple(output.shape) != (1, channels, *min_hw):
        raise TreefuseError(f"the exported program returned shape {tuple(output.shape)}; this is a treefuse bug")


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide torch.export's and torchao's warning chatter; errors still raise."""
    quiet_loggers = [logging.getLogger(name) for name in ("torch._export", "torch.export", "torchao", "executorch")]
    levels = [logger.level for logger in quiet_loggers]
    for logger in quiet_loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        for logger, level in zip(quiet_loggers, levels):
            logger.setLevel(level)
