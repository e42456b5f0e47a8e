"""Weights -> Core ML ML program (.mlpackage) with flexible height/width, in four precisions.

The folded model is traced (an exact rewrite with fewer ops), converted with a
flexible H x W input range, stamped with treefuse provenance, written atomically and
read back with coremltools' own loader before it is moved into place.
"""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from treefuse.checkpoint import load_weights
from treefuse.errors import TreefuseError
from treefuse.artifact import artifact_metadata
from treefuse.export.request import Converted, ExportRequest, run_export
from treefuse.folding import fold
from treefuse.provenance import provenance

INPUT_NAME = "image"
OUTPUT_NAME = "derained"
AUTHOR = "treefuse"
DEFAULT_LICENSE = "internal research use (weights trained on public deraining benchmarks; see the source checkpoint)"
# Consts with more values than this become int8: every conv weight of the default model (the
# smallest, the tail's 3x16, has 48 values) but not its 16-value biases.
WEIGHT_QUANT_THRESHOLD = 16
DEFAULT_MIN_HW, DEFAULT_MAX_HW = (64, 64), (2048, 2048)


@dataclass(frozen=True)
class CoreMLPrecision:
    """How one precision is produced: compute dtype, deployment target, what is 8-bit."""

    compute: str  # "fp32" or "fp16": the dtype the program's ops compute in
    target: str  # minimum deployment target (a coremltools.target name)
    int8_weights: bool
    int8_activations: bool
    description: str


PRECISIONS: dict[str, CoreMLPrecision] = {
    "fp32": CoreMLPrecision("fp32", "iOS16", False, False, "FP32 weights and compute"),
    "fp16": CoreMLPrecision("fp16", "iOS16", False, False, "FP16 weights and compute"),
    "w8": CoreMLPrecision("fp16", "iOS16", True, False, "8-bit weights (per-channel symmetric), FP16 compute"),
    "w8a8": CoreMLPrecision("fp16", "iOS17", True, True,
                            "8-bit weights and activations (torch-side LinearQuantizer, calibrated), FP16 compute"),
}


def convert(request: ExportRequest, staged: Path) -> Converted:
    """The format table's entry: the Core ML package `request` asks for at `staged` (FP16 ranges first when asked).

    With a QAT run (`treefuse qat --target coreml-w8a8` of these weights) the w8a8 package holds the run's
    learned weights and scales instead of calibrated ones."""
    from treefuse.export.verify import gate_miss_advice
    from treefuse.runtimes.backends.coreml_mil import import_coremltools

    min_hw, max_hw = request.min_hw or DEFAULT_MIN_HW, request.max_hw or DEFAULT_MAX_HW
    recipe, calibration, weights = PRECISIONS[request.precision], request.calibration, request.reference_weights()
    if request.qat_run is not None:
        from treefuse.qat_run import require_target

        calibration = require_target(request.qat_run, "coreml-w8a8")["calibration_set"]  # judged on the run's images
    ranges = _fp16_ranges(request)
    loaded = load_weights(weights)  # bad weights are refused before coremltools' slow import
    ct = import_coremltools()
    example = torch.rand(1, loaded.config.in_channels, *_default_hw(min_hw, max_hw),
                         generator=torch.Generator().manual_seed(0))
    qat, advice = None, gate_miss_advice("coreml", request.precision)
    if request.qat_run is not None:
        model, qat, advice = _learned_to_trace(request.qat_run)
        calibration_sha256 = qat["calib_sha256"]
    else:
        model, calibration_sha256 = _model_to_trace(loaded.model, recipe, calibration, example)
    mlmodel = _convert(ct, model, recipe, example, min_hw, max_hw)
    record = provenance(config=loaded.config.to_dict(), source_checkpoint=str(weights),
                        source_sha256=loaded.sha256, precision=request.precision, precision_detail=recipe.description,
                        deployment_target=recipe.target, min_hw=list(min_hw), max_hw=list(max_hw),
                        calibration_sha256=calibration_sha256, qat=qat)
    _stamp(mlmodel, record, request.options.get("license") or DEFAULT_LICENSE)
    mlmodel.save(str(staged))
    notes = ()
    if ranges is not None:
        from treefuse.export.fp16_range import write_report

        notes = (f"FP16 ranges: {write_report(ranges, staged.with_name(staged.name + '.fp16-ranges.json'))}",)
    learned = f" with the weights and scales learned in {request.qat_run}" if request.qat_run is not None else ""
    return Converted(f"{request.precision}{learned}, inputs {min_hw[0]}x{min_hw[1]} .. {max_hw[0]}x{max_hw[1]}",
                     calibration=calibration if isinstance(calibration, (str, Path)) else None,
                     hw_range=(min_hw, max_hw), advice=advice, notes=notes)


def _fp16_ranges(request: ExportRequest) -> dict | None:
    """FP16 safety of the network Core ML will compute in FP16 (export/fp16_range.py), when asked for."""
    check_fp16, strict = request.options.get("check_fp16"), request.options.get("strict_fp16", False)
    if check_fp16 is None:
        if strict:
            raise TreefuseError("--strict-fp16 needs a calibration set to measure ranges on: pass --check-fp16 CALIB_DIR")
        return None
    if request.precision == "fp32":
        raise TreefuseError("--check-fp16 judges FP16 compute; fp32 computes in FP32: drop it or choose fp16/w8/w8a8")
    from treefuse.export.fp16_range import fp16_report_for_weights

    return fp16_report_for_weights(request.reference_weights(), check_fp16, strict=strict)


def export_coreml(weights_path: str | Path, out_path: str | Path, precision: str = "fp16",
                  min_hw: tuple[int, int] = DEFAULT_MIN_HW, max_hw: tuple[int, int] = DEFAULT_MAX_HW,
                  calibration: Any = None, license_text: str = DEFAULT_LICENSE,
                  paired_images: Path | None = None, qat_run: Path | None = None) -> Path:
    """The export pipeline for a Core ML package, from Python; returns the path."""
    run_export(ExportRequest("coreml", Path(weights_path), Path(out_path), precision, calibration, paired_images,
                             qat_run, min_hw=min_hw, max_hw=max_hw, options={"license": license_text}))
    return Path(out_path)


def _learned_to_trace(qat_run: Path) -> tuple[torch.nn.Module, dict[str, Any], str]:
    """A QAT run's finalized network, its provenance record and the advice should it miss its gate."""
    from treefuse.export.coreml.qat import finalized_from_run
    from treefuse.qat_run import learned_record, miss_advice, read_settings

    model, metadata = finalized_from_run(qat_run)
    return (model, learned_record(qat_run, read_settings(qat_run), metadata),
            miss_advice(qat_run, "treefuse export coreml --precision w8a8"))


def _default_hw(min_hw: tuple[int, int], max_hw: tuple[int, int]) -> tuple[int, int]:
    return tuple(min(max(low, 256), high) for low, high in zip(min_hw, max_hw))  # type: ignore[return-value]


def _model_to_trace(model: torch.nn.Module, recipe: CoreMLPrecision, calibration: Any,
                    example: torch.Tensor) -> tuple[torch.nn.Module, str | None]:
    folded = fold(model)
    if not recipe.int8_activations:
        return folded, None
    from treefuse.export.calibration_images import calibration_from
    from treefuse.export.coreml.w8a8 import quantize_w8a8

    images = calibration_from(calibration)
    return quantize_w8a8(folded, images, example), images.sha256


def _convert(ct: Any, model: torch.nn.Module, recipe: CoreMLPrecision, example: torch.Tensor,
             min_hw: tuple[int, int], max_hw: tuple[int, int]) -> Any:
    with torch.no_grad(), warnings.catch_warnings():
        # The finalized W8A8 graph uses quantize_per_tensor, which torch marks deprecated; tracing still works.
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        # Core ML converts TorchScript: torch marks tracing deprecated, coremltools still needs it
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.trace(_method)?` is deprecated",
                                category=DeprecationWarning)
        traced = torch.jit.trace(model, example)
    height, width = (ct.RangeDim(low, high, default) for low, high, default in zip(min_hw, max_hw, example.shape[2:]))
    shape = ct.Shape(shape=(1, example.shape[1], height, width))
    compute = ct.precision.FLOAT16 if recipe.compute == "fp16" else ct.precision.FLOAT32
    # A converter that fails on a valid request is a bug (exit 3, traceback shown), not the user's input.
    with _progress_only_on_a_terminal():
        mlmodel = ct.convert(traced, convert_to="mlprogram", inputs=[ct.TensorType(name=INPUT_NAME, shape=shape)],
                             outputs=[ct.TensorType(name=OUTPUT_NAME)], compute_precision=compute,
                             minimum_deployment_target=getattr(ct.target, recipe.target))
    if recipe.int8_weights and not recipe.int8_activations:
        with _progress_only_on_a_terminal():
            mlmodel = _quantize_weights(mlmodel)
    return mlmodel


def _progress_only_on_a_terminal() -> contextlib.AbstractContextManager:
    """coremltools draws progress bars on stderr: keep them for a person at a terminal, not for logs and pipes."""
    from treefuse.progress import bars_wanted

    return contextlib.nullcontext() if bars_wanted() else contextlib.redirect_stderr(io.StringIO())


def _quantize_weights(mlmodel: Any) -> Any:
    from coremltools.optimize import coreml as cto

    op_config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel",
                                            weight_threshold=WEIGHT_QUANT_THRESHOLD)
    return cto.linear_quantize_weights(mlmodel, cto.OptimizationConfig(global_config=op_config))


def _stamp(mlmodel: Any, record: dict[str, Any], license_text: str) -> None:
    """Description, author, licence and treefuse provenance in the package's metadata."""
    from treefuse import __version__

    mlmodel.short_description = (f"treefuse deraining network (Deep Tree-Structured Fusion), {record['precision']}: "
                                 f"{record['precision_detail']}")
    mlmodel.author = AUTHOR
    mlmodel.license = license_text
    mlmodel.version = __version__
    mlmodel.input_description[INPUT_NAME] = "rainy RGB image, 1x3xHxW, values in [0, 1]"
    mlmodel.output_description[OUTPUT_NAME] = "derained RGB image, 1x3xHxW, values in about [0, 1]"
    meta = mlmodel.user_defined_metadata
    meta["treefuse.provenance"] = json.dumps(record, sort_keys=True)
    meta.update(artifact_metadata(format="coreml", precision=record["precision"], config=record["config"],
                                  source_sha256=record["source_sha256"],
                                  calibration_sha256=record["calibration_sha256"]))
    meta["treefuse.deployment_target"] = record["deployment_target"]
