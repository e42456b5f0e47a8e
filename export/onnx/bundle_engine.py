"""An ONNX model on ONNX Runtime, as a device bundle runs it (and treefuse's own runner sets its session up).

`treefuse pack onnx:m.onnx` copies this file into the bundle's runner as `onnx_engine.py`; it imports
nothing of treefuse or torch, only numpy, onnxruntime and (for `run.py --layers`) onnx.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

try:
    from .engines import BundleError, import_runtime  # inside a bundle's runner package
except ImportError:  # read in treefuse's own tree
    from treefuse.portable.engines import BundleError, import_runtime

RUNTIMES = (("onnxruntime", "onnxruntime"),)  # (module, pip package), in the order tried
NEEDS = "onnxruntime"


def session_options(ort: Any, threads: int | None, log_severity: int = 3) -> Any:
    """The session options of every ONNX Runtime session treefuse makes, on a device or here."""
    options = ort.SessionOptions()
    options.log_severity_level = log_severity
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle worker threads would otherwise spin after each call and steal the CPU from the
    # next backend in an interleaved bench, flattering ONNX Runtime's ratio.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    return options


def load(path: Path, threads: int | None) -> "OnnxEngine":
    """The model in a CPU session; BundleError (one line) when the runtime is missing or refuses the file."""
    return OnnxEngine(path, threads)


class OnnxEngine:
    """NCHW float32 in and out; an FP16 model's input is cast on the way in."""

    def __init__(self, path: Path, threads: int | None) -> None:
        self.ort, self.runtime = import_runtime(RUNTIMES)
        self.path, self.threads = path, threads
        self.ort.set_default_logger_severity(3)
        self.session = self.ort.InferenceSession(str(path), session_options(self.ort, threads),
                                                 providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name, self.fp16_input = first.name, first.type == "tensor(float16)"

    def infer(self, batch: np.ndarray) -> np.ndarray:
        feed = batch.astype(np.float16) if self.fp16_input else batch
        return self.session.run(None, {self.input_name: feed})[0]

    def layers(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output under the folded model's names, from a second session with each one a graph output."""
        if not hasattr(self, "layer_session"):
            try:
                from .layers import exposed_onnx
            except ImportError:
                from treefuse.portable.layers import exposed_onnx
            try:
                model_bytes, self.layer_tensors = exposed_onnx(self.path)
            except ImportError:
                raise BundleError("--layers needs the onnx package to expose the model's layers: pip install onnx") from None
            self.layer_session = self.ort.InferenceSession(model_bytes, session_options(self.ort, self.threads),
                                                           providers=["CPUExecutionProvider"])
        feed = batch.astype(np.float16) if self.fp16_input else batch
        values = self.layer_session.run(list(self.layer_tensors.values()), {self.input_name: feed})
        return dict(zip(self.layer_tensors, values))
