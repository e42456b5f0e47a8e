"""Weights -> LiteRT model (.tflite) through litert-torch, FP32, FP16 weights or INT8, with a hashed sidecar.

litert-torch would downgrade this environment's typing-extensions and pulls jax, so the
conversion runs in its own environment (.venv-litert, `make install-litert`) as a
subprocess (export/pt2e/litert_convert.py); only paths and a JSON facts file cross over. The
result is loaded and run with LiteRT's interpreter here before it is moved into place.
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
from treefuse.export.request import ExportRequest, check_request
from treefuse.files import atomic_path
from treefuse.provenance import provenance
from treefuse.sidecar import write_sidecar

PRECISIONS = {"fp32": "FP32 weights and compute (XNNPACK)",
              "fp16": "FP16 weights, FP32 compute (LiteRT's float16 post-training recipe)",
              "int8": "8-bit weights (per-channel symmetric) and activations, PT2E via litert-torch, calibrated; "
                      "across-block fuses in FP32"}
DEFAULT_SIZE = (256, 256)
CONVERTER_ENV = "TREEFUSE_LITERT_PYTHON"
REPO_VENV = Path(__file__).resolve().parents[2] / ".venv-litert" / "bin" / "python"


def converter_python() -> str:
    """A Python that has litert-torch: $TREEFUSE_LITERT_PYTHON, this one, or the repo's .venv-litert."""
    if os.environ.get(CONVERTER_ENV):
        return os.environ[CONVERTER_ENV]
    if importlib.util.find_spec("litert_torch") is not None:
        return sys.executable
    if REPO_VENV.is_file():
        return str(REPO_VENV)
    raise TreefuseError("litert: the converter (litert-torch) is not installed; run `make install-litert` (its own "
                        f"venv .venv-litert) or set {CONVERTER_ENV} to a Python that has litert-torch==0.10.0")


def converter_missing() -> str | None:
    """The format table's availability check: None when a converter is found, else how to install one."""
    try:
        converter_python()
    except TreefuseError as exc:
        return str(exc)
    return None


def export(request: ExportRequest) -> str:
    """The format table's entry: a .tflite as `request` asks; returns the line to print."""
    if request.qat_run is not None:
        raise TreefuseError("litert --qat is not supported yet (litert-torch's QAT annotation fails on this torch and a "
                            "converted XNNPACK graph converts with an INT8 input); the same xnnpack-int8 run exports "
                            "with `treefuse export executorch --precision int8 --qat RUN`, or use --calib here")
    export_litert(request.source, request.out, request.precision, request.calibration, request.size or DEFAULT_SIZE,
                  paired_images=request.paired_images)
    return f"wrote {request.out} and {request.out.name}.json ({request.precision}, XNNPACK)"


def export_litert(weights_path: str | Path, out_path: str | Path, precision: str = "fp32", calibration: Any = None,
                  size: tuple[int, int] = DEFAULT_SIZE, paired_images: Path | None = None) -> Path:
    """Export treefuse weights to a .tflite at `out_path` plus its sidecar; returns the path.

    The staged model runs on LiteRT's interpreter against PyTorch and must pass its precision's gate first."""
    from treefuse.export.verify import gate_miss_advice, verify_staged
    from treefuse.runtimes.backends.litert_runner import import_interpreter

    out_path = Path(out_path)
    check_request(ExportRequest("litert", Path(weights_path), out_path, precision, calibration, paired_images,
                                size=size))
    import_interpreter()  # the check below needs LiteRT's interpreter; say so before minutes of conversion
    python = converter_python()
    with atomic_path(out_path) as staged, tempfile.TemporaryDirectory(prefix="treefuse-litert-") as tmp:
        facts_path = Path(tmp) / "facts.json"
        # Resolved paths: the converter runs with the repository as its working folder, not the user's.
        command = [python, "-m", "treefuse.export.pt2e.litert_convert", "--weights", str(Path(weights_path).resolve()),
                   "--out", str(staged.resolve()), "--precision", precision, "--size", f"{size[0]}x{size[1]}",
                   "--facts", str(facts_path.resolve())]
        if calibration is not None:
            command += ["--calib", str(Path(calibration).resolve())]
        _run_converter(command)
        facts = json.loads(facts_path.read_text())
        verify_staged("litert", staged, Path(weights_path), precision,
                      calibration if isinstance(calibration, (str, Path)) else None, paired_images,
                      advice=gate_miss_advice("litert", precision))
    record = provenance(config=facts["config"], source_checkpoint=str(weights_path),
                        source_sha256=facts["source_sha256"], precision=precision,
                        precision_detail=PRECISIONS[precision], delegate="XNNPACK", converted_hw=list(size),
                        folded=True, calibration_sha256=facts["calibration_sha256"], tool_versions=facts["tool_versions"])
    metadata = artifact_metadata(format="litert", precision=precision, config=facts["config"],
                                 source_sha256=facts["source_sha256"], calibration_sha256=facts["calibration_sha256"],
                                 target="XNNPACK")
    metadata["treefuse.tool_versions"] = json.dumps(facts["tool_versions"], sort_keys=True)  # the converter's, not ours
    write_sidecar(out_path, metadata, record)
    return out_path


def _run_converter(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1].removeprefix("treefuse: error: ").strip() if lines else f"exit {done.returncode}"
        raise TreefuseError(f"litert: conversion failed ({reason[:300]})")
