"""A LiteRT model on XNNPACK, as a device bundle runs it.

`treefuse pack litert:m.tflite` copies this file into the bundle's runner as `litert_engine.py`; it
imports nothing of treefuse or torch, only numpy and ai-edge-litert (or the older tflite-runtime).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

try:
    from .engines import import_runtime  # inside a bundle's runner package
except ImportError:  # read in treefuse's own tree
    from treefuse.portable.engines import import_runtime

RUNTIMES = (("ai_edge_litert.interpreter", "ai-edge-litert"), ("tflite_runtime.interpreter", "tflite-runtime"))
NEEDS = "ai-edge-litert (or tflite-runtime)"


def load(path: Path, threads: int | None) -> "LiteRTEngine":
    return LiteRTEngine(path, threads)


class LiteRTEngine:
    """The interpreter (XNNPACK by default), resized to each input: every op of this network is size-agnostic."""

    def __init__(self, path: Path, threads: int | None) -> None:
        runtime, self.runtime = import_runtime(RUNTIMES)
        self.interpreter = runtime.Interpreter(model_path=str(path), num_threads=threads or None)
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.shape: tuple[int, ...] | None = None

    def infer(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape != self.shape:
            self.interpreter.resize_tensor_input(self.input_index, list(batch.shape))
            self.interpreter.allocate_tensors()
            self.shape = batch.shape
        self.interpreter.set_tensor(self.input_index, np.ascontiguousarray(batch))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index).copy()
