"""A .rknn's recipe rebuilt and run on rknn-toolkit2's x86 simulator, inside the toolkit's own venv.

The simulator cannot run a loaded .rknn ("use load_xxx & build instead of load_rknn"), so it rebuilds
what export built from: the recipe `m.rknn.sim/` whose hashes the sidecar `m.rknn.json` keeps. Two
callers share this: the toolkit's worker (export/rknn/worker.py, `serve`) and a device bundle's engine
run with the toolkit's Python (export/rknn/board_engine.py, packed beside it). It imports nothing of
treefuse: numpy and the toolkit (and onnx through toolkit_qdq.py for a QDQ recipe).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tempfile
import warnings
from importlib import import_module
from pathlib import Path
from typing import Any, Iterator

PACKAGE = "rknn-toolkit2"


class JobError(Exception):
    """The toolkit refused the job: one line for the caller."""


@contextlib.contextmanager
def toolkit_output(log_path: Path) -> Iterator[None]:
    """File descriptors 1 and 2 sent to `log_path` (the toolkit prints progress bars and colour codes there)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log_path, "ab") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def new_toolkit(job: dict[str, Any]) -> Any:
    """An RKNN object configured as the job says (inputs already in [0, 1]: no mean, no std)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pkg_resources' deprecation warning at import
        from rknn.api import RKNN
    toolkit = RKNN(verbose=False)
    check(toolkit.config(target_platform=job["platform"], quantized_algorithm=job.get("algorithm") or "normal",
                         optimization_level=job.get("optimization_level", 3)), f"config for {job['platform']}")
    return toolkit


def check(code: int, what: str) -> None:
    if code != 0:
        raise JobError(f"{PACKAGE} failed at {what}")


def rebuilt(recipe: Path, job: dict[str, Any]) -> Any:
    """A toolkit holding the model rebuilt from its recipe, as the simulator needs (it cannot run a loaded .rknn)."""
    toolkit = new_toolkit(job)
    if job["mode"] == "int8":
        check(toolkit.hybrid_quantization_step2(model_input=str(recipe / "model.model"),
                                                data_input=str(recipe / "model.data"),
                                                model_quantization_cfg=str(recipe / "quantization.cfg")),
              "build (hybrid step 2)")
    else:
        load_onnx(toolkit, recipe / "model.onnx", job.get("qdq_rewrites", []))  # a recipe's own rewrites, no others
        check(toolkit.build(do_quantization=False), "build")
    return toolkit


def load_onnx(toolkit: Any, model: Path, rewrites: list[str]) -> None:
    """load_onnx of `model`, or of a copy with `rewrites` applied (toolkit_qdq.py) when there are any."""
    if not rewrites:
        check(toolkit.load_onnx(model=str(model)), "load_onnx")
        return
    with tempfile.TemporaryDirectory(prefix="treefuse-rknn-qdq-") as tmp:
        prepared = toolkit_qdq().prepared_for_toolkit(model, Path(tmp) / "model.onnx", rewrites)
        check(toolkit.load_onnx(model=str(prepared)), "load_onnx")


def toolkit_qdq() -> Any:
    """The QDQ rewrites module beside this file: a package import (treefuse, a bundle's runner), a sibling as a script."""
    return import_module(f"{__package__}.toolkit_qdq" if __package__ else "toolkit_qdq")


def simulate(toolkit: Any, batch: Any) -> list[Any]:
    """Every graph output of the rebuilt model for `batch` (N x 3 x H x W at the compiled size), float32, in order."""
    import numpy as np

    outputs = [toolkit.inference(inputs=[np.ascontiguousarray(image[None])], data_format="nchw") for image in batch]
    if any(output is None for output in outputs):
        raise JobError("the simulator returned no output")
    return [np.concatenate([np.asarray(output[k], dtype=np.float32) for output in outputs], axis=0)
            for k in range(len(outputs[0]))]


def last_toolkit_error(log: Path) -> str:
    """The toolkit's last error line (`E ...`) in its log, colour codes removed, or ''."""
    try:
        lines = re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace")).splitlines()
    except OSError:
        return ""
    errors = [line.strip()[2:].strip() for line in lines if line.strip().startswith("E ") and "version" not in line]
    return " ".join(errors[-1].split())[:200] if errors else ""
