"""Weights -> LiteRT model (.tflite) through litert-torch, FP32, FP16 weights or INT8, with a hashed sidecar.

litert-torch would downgrade this environment's typing-extensions and pulls jax, so the
conversion runs in its own environment (.venv-litert, `make install-litert`) as a
subprocess (export/litert/convert.py); only paths and a JSON facts file cross over (and, for
a QAT run, its `convert_pt2e` program as a .pt2, since the run's network is rebuilt with ExecuTorch's
quantizer, which lives here). The result is loaded and run with LiteRT's interpreter here before it
is moved into place.
"""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from treefuse.artifact import artifact_metadata
from treefuse.errors import TreefuseError
from treefuse.export.request import Converted, ExportRequest, run_export
from treefuse.provenance import provenance
from treefuse.side_venv import side_python

PRECISIONS = {"fp32": "FP32 weights and compute (XNNPACK)",
              "fp16": "FP16 weights, FP32 compute (LiteRT's float16 post-training recipe)",
              "int8": "8-bit weights (per-channel symmetric) and activations, PT2E via litert-torch, calibrated; "
                      "across-block fuses in FP32"}
DEFAULT_SIZE = (256, 256)
CONVERTER_ENV = "TREEFUSE_LITERT_PYTHON"


def converter_python() -> str:
    """A Python that has litert-torch: $TREEFUSE_LITERT_PYTHON, this one, or the repo's .venv-litert."""
    if not os.environ.get(CONVERTER_ENV) and importlib.util.find_spec("litert_torch") is not None:
        return sys.executable
    python = side_python(".venv-litert", CONVERTER_ENV)
    if python is not None:
        return str(python)
    raise TreefuseError("litert: the converter (litert-torch) is not installed; run `make install-litert` (its own "
                        f"venv .venv-litert) or set {CONVERTER_ENV} to a Python that has litert-torch==0.10.0")


def converter_missing() -> str | None:
    """The format table's availability check: None when a converter is found, else how to install one."""
    try:
        converter_python()
    except TreefuseError as exc:
        return str(exc)
    return None


def convert(request: ExportRequest, staged: Path) -> Converted:
    """The format table's entry: the .tflite `request` asks for at `staged`, its sidecar's record beside.

    With a QAT run (`treefuse qat --target xnnpack-int8` of these weights) the INT8 model holds the run's
    learned weights and scales instead of calibrated ones."""
    from treefuse.export.verify import gate_miss_advice
    from treefuse.runtimes.backends.litert_runner import import_interpreter

    size, weights, qat_run = request.size or DEFAULT_SIZE, request.reference_weights(), request.qat_run
    if qat_run is not None:
        from treefuse.export.pt2e.qat import TARGET
        from treefuse.qat_run import require_target

        require_target(qat_run, TARGET)  # a wrong or broken run is one line before anything heavy
    import_interpreter()  # the pipeline's check needs LiteRT's interpreter; say so before minutes of conversion
    python = converter_python()
    calibration, qat, advice = request.calibration, None, gate_miss_advice("litert", request.precision)
    with tempfile.TemporaryDirectory(prefix="treefuse-litert-") as tmp:
        facts_path = Path(tmp) / "facts.json"
        # Resolved paths: the converter runs with the repository as its working folder, not the user's.
        command = [python, "-m", "treefuse.export.litert.convert", "--weights", str(weights.resolve()),
                   "--out", str(staged.resolve()), "--precision", request.precision, "--size", f"{size[0]}x{size[1]}",
                   "--facts", str(facts_path.resolve())]
        if calibration is not None:
            command += ["--calib", str(Path(calibration).resolve())]
        if qat_run is not None:
            from treefuse.qat_run import miss_advice

            qat = _learned_program(qat_run, weights, size, Path(tmp) / "learned.pt2")
            command += ["--learned", str((Path(tmp) / "learned.pt2").resolve())]
            calibration = qat["calibration_set"]
            advice = miss_advice(qat_run, "treefuse export litert --precision int8")
        _run_converter(command)
        facts = json.loads(facts_path.read_text())
    if qat is not None:
        facts["calibration_sha256"] = qat["calib_sha256"]
    record = provenance(config=facts["config"], source_checkpoint=str(weights), source_sha256=facts["source_sha256"],
                        precision=request.precision, precision_detail=PRECISIONS[request.precision],
                        delegate="XNNPACK", converted_hw=list(size), folded=True,
                        calibration_sha256=facts["calibration_sha256"], tool_versions=facts["tool_versions"], qat=qat)
    metadata = artifact_metadata(format="litert", precision=request.precision, config=facts["config"],
                                 source_sha256=facts["source_sha256"], calibration_sha256=facts["calibration_sha256"],
                                 target="XNNPACK")
    metadata["treefuse.tool_versions"] = json.dumps(facts["tool_versions"], sort_keys=True)  # the converter's, not ours
    learned = f" with the weights and scales learned in {qat_run}" if qat_run is not None else ""
    return Converted(f"{request.precision}{learned}, XNNPACK, input {size[0]}x{size[1]}",
                     calibration=calibration if isinstance(calibration, (str, Path)) else None, advice=advice,
                     sidecar=(metadata, record))


def export_litert(weights_path: str | Path, out_path: str | Path, precision: str = "fp32", calibration: Any = None,
                  size: tuple[int, int] = DEFAULT_SIZE, paired_images: Path | None = None,
                  qat_run: Path | None = None) -> Path:
    """The export pipeline for a .tflite plus its sidecar, from Python; returns the path."""
    run_export(ExportRequest("litert", Path(weights_path), Path(out_path), precision, calibration, paired_images,
                             qat_run, size=size))
    return Path(out_path)


def _learned_program(qat_run: Path, weights_path: Path, size: tuple[int, int], out: Path) -> dict[str, Any]:
    """Write the run's learned network, converted to quantize/dequantize ops, to `out` as a .pt2.

    Weights stay float beside their quantize ops (fold_quantize=False), as litert-torch's own INT8 path
    hands them to the converter. Returns the run's provenance record."""
    import torch

    from treefuse.checkpoint import load_weights
    from treefuse.export.pt2e.qat import TARGET, converted_from_run
    from treefuse.qat_run import learned_record, require_target
    from treefuse.quiet import held_stderr

    settings = require_target(qat_run, TARGET)
    example = torch.rand(1, load_weights(weights_path).config.in_channels, *size,
                         generator=torch.Generator().manual_seed(0))
    with held_stderr():  # torch.export's and torchao's warning chatter; errors still raise
        converted, metadata = converted_from_run(qat_run, fold_quantize=False)
        torch.export.save(torch.export.export(converted, (example,)), str(out))
    return learned_record(qat_run, settings, metadata)


def _run_converter(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1].removeprefix("treefuse: error: ").strip() if lines else f"exit {done.returncode}"
        raise TreefuseError(f"litert: conversion failed ({reason[:300]})")
