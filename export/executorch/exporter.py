"""Weights -> ExecuTorch program (.pte) lowered to the XNNPACK delegate, FP32 or INT8 (PT2E).

Height and width are dynamic between a declared minimum and maximum (ExecuTorch plans
its memory for the maximum). A .pte has no metadata field, so provenance goes into a
hashed sidecar (`m.pte.json`). The staged program runs on ExecuTorch's own runtime against PyTorch
before it is moved into place.
"""
from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from treefuse.artifact import artifact_metadata
from treefuse.checkpoint import load_weights
from treefuse.errors import TreefuseError
from treefuse.export.request import Converted, ExportRequest, run_export
from treefuse.folding import fold
from treefuse.optional import import_optional
from treefuse.provenance import provenance, tool_versions

PRECISIONS = {"fp32": "FP32 weights and compute (XNNPACK)",
              "int8": "8-bit weights (per-channel symmetric) and activations, PT2E XNNPACKQuantizer, calibrated"}
DEFAULT_MIN_HW, DEFAULT_MAX_HW = (16, 16), (1088, 1920)
TOOLS = ("treefuse", "torch", "executorch", "torchao", "numpy")


def import_executorch() -> Any:
    """ExecuTorch's exporter (exir), or one line naming the extra to install."""
    return import_optional("executorch.exir", "executorch: ExecuTorch's exporter", "executorch")


def convert(request: ExportRequest, staged: Path) -> Converted:
    """The format table's entry: the XNNPACK .pte `request` asks for at `staged`, its sidecar's record beside.

    With a QAT run (`treefuse qat --target xnnpack-int8` of these weights) the INT8 program holds the run's
    learned weights and scales instead of calibrated ones."""
    from treefuse.export.verify import gate_miss_advice

    if request.options.get("layers") and request.qat_run is not None:
        raise TreefuseError("--layers rebuilds the program with calibrated scales, not a QAT run's learned ones: "
                            "drop --layers, or export with --calib")
    import_executorch()
    min_hw, max_hw = request.min_hw or DEFAULT_MIN_HW, request.max_hw or DEFAULT_MAX_HW
    weights = request.reference_weights()
    loaded = load_weights(weights)
    network = fold(loaded.model)
    example = torch.rand(1, loaded.config.in_channels, *_example_hw(min_hw, max_hw),
                         generator=torch.Generator().manual_seed(0))
    dynamic = _dynamic_shapes(min_hw, max_hw)
    calibration, calibration_sha256, qat = request.calibration, None, None
    advice = gate_miss_advice("executorch", request.precision)
    with _quiet():
        program = torch.export.export(network, (example,), dynamic_shapes=dynamic)
        if request.qat_run is not None:
            from treefuse.export.pt2e.qat import program_from_run
            from treefuse.qat_run import miss_advice

            program, qat = program_from_run(request.qat_run, example, dynamic)
            calibration, calibration_sha256 = qat["calibration_set"], qat["calib_sha256"]
            advice = miss_advice(request.qat_run, "treefuse export executorch --precision int8")
        elif request.precision == "int8":
            from treefuse.export.calibration_images import calibration_from

            images = calibration_from(calibration)
            program = _quantize_int8(program, images.images, example, dynamic)
            calibration_sha256 = images.sha256
        staged.write_bytes(_lower(program))
    record = provenance(config=loaded.config.to_dict(), source_checkpoint=str(weights), source_sha256=loaded.sha256,
                        precision=request.precision, precision_detail=PRECISIONS[request.precision],
                        delegate="XNNPACK", min_hw=list(min_hw), max_hw=list(max_hw), folded=True,
                        calibration_sha256=calibration_sha256, tool_versions=tool_versions(TOOLS), qat=qat)
    metadata = artifact_metadata(format="executorch", precision=request.precision, config=loaded.config.to_dict(),
                                 source_sha256=loaded.sha256, calibration_sha256=calibration_sha256, target="XNNPACK")
    if request.options.get("layers"):  # a companion: the same program with every layer as an output
        from treefuse.export.executorch.layers import write_layers_program  # it builds on this module

        write_layers_program(weights, staged, request.precision, calibration, min_hw, max_hw, (metadata, record))
    learned = f" with the weights and scales learned in {request.qat_run}" if request.qat_run is not None else ""
    return Converted(f"{request.precision}{learned}, XNNPACK, inputs {min_hw[0]}x{min_hw[1]} .. "
                     f"{max_hw[0]}x{max_hw[1]}", calibration=calibration if isinstance(calibration, (str, Path))
                     else None, hw_range=(min_hw, max_hw), advice=advice, sidecar=(metadata, record))


def export_executorch(weights_path: str | Path, out_path: str | Path, precision: str = "fp32",
                      calibration: Any = None, min_hw: tuple[int, int] = DEFAULT_MIN_HW,
                      max_hw: tuple[int, int] = DEFAULT_MAX_HW, paired_images: Path | None = None,
                      qat_run: Path | None = None) -> Path:
    """The export pipeline for an XNNPACK .pte plus its sidecar, from Python; returns the path."""
    run_export(ExportRequest("executorch", Path(weights_path), Path(out_path), precision, calibration, paired_images,
                             qat_run, min_hw=min_hw, max_hw=max_hw))
    return Path(out_path)


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

    # A lowering that fails on a valid request is a bug (exit 3, traceback shown), not the user's input.
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch()
    return bytes(lowered.buffer)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Hide torch.export's and torchao's warning chatter (loggers, stdout, stderr); errors still raise."""
    from treefuse.quiet import held_stderr

    quiet_loggers = [logging.getLogger(name) for name in ("torch._export", "torch.export", "torchao", "executorch")]
    levels = [logger.level for logger in quiet_loggers]
    for logger in quiet_loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), held_stderr(), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch's pytree deprecations, ~9 per lowering
            yield
    finally:
        for logger, level in zip(quiet_loggers, levels):
            logger.setLevel(level)
