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

import numpy as np

from treefuse.artifact import artifact_metadata
from treefuse.errors import TreefuseError
from treefuse.export.request import check_export_request
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


def export_litert(weights_path: str | Path, out_path: str | Path, precision: str = "fp32", calibration: Any = None,
                  size: tuple[int, int] = DEFAULT_SIZE) -> Path:
    """Export treefuse weights to a .tflite at `out_path` plus its sidecar; returns the path."""
    from treefuse.runtimes.backends.litert_runner import import_interpreter

    out_path = Path(out_path)
    _check_request(out_path, precision, calibration, size)
    import_interpreter()  # the check below needs LiteRT's interpreter; say so before minutes of conversion
    python = converter_python()
    with atomic_path(out_path) as staged, tempfile.TemporaryDirectory(prefix="treefuse-litert-") as tmp:
        facts_path = Path(tmp) / "facts.json"
        command = [python, "-m", "treefuse.export.pt2e.litert_convert", "--weights", str(weights_path), "--out",
                   str(staged), "--precision", precision, "--size", f"{size[0]}x{size[1]}", "--facts", str(facts_path)]
        if calibration is not None:
            command += ["--calib", str(calibration)]
        _run_converter(command)
        facts = json.loads(facts_path.read_text())
        _run_once(staged, size)
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


def _check_request(out_path: Path, precision: str, calibration: Any, size: tuple[int, int]) -> None:
    check_export_request("LiteRT", ".tflite", PRECISIONS, out_path, precision, calibration)
    if min(size) < 8:
        raise TreefuseError(f"--size {size[0]}x{size[1]} is too small to convert at; use 8x8 or more (e.g. 256x256)")
    if calibration is not None and isinstance(calibration, (str, Path)):
        from treefuse.calib.store import load_calibration_set

        load_calibration_set(calibration)  # refuse a bad set here, in one line, before the subprocess


def _run_converter(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        reason = lines[-1].removeprefix("treefuse: error: ").strip() if lines else f"exit {done.returncode}"
        raise TreefuseError(f"litert: conversion failed ({reason[:300]})")


def _run_once(path: Path, size: tuple[int, int]) -> None:
    """Load the written model with LiteRT's interpreter and run it at the converted size and a smaller one."""
    from treefuse.runtimes.backends.litert_runner import LiteRTRunner

    with LiteRTRunner(path) as runner:
        for height, width in (size, (max(8, size[0] // 2), max(8, size[1] // 2 + 1))):
            runner.infer(np.zeros((1, 3, height, width), np.float32))
