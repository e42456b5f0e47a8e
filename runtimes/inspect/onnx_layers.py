"""Every layer of an ONNX model on ONNX Runtime: each layer's tensor added as a graph output."""
from __future__ import annotations

from typing import Callable

import numpy as np

from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.inspect.names import exposed_onnx


def open_layers(runner: Runner) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function batch -> {layer: output} for an active ONNX Runtime runner (same options, new session).

    ONNX Runtime fuses no node whose output is a graph output, so the final output of this session
    can differ from the plain one by the fusions it gave up; `diff` reports by how much.
    """
    import onnxruntime as ort

    model_bytes, layers = exposed_onnx(runner.path)
    session = ort.InferenceSession(model_bytes, runner.session_options(), providers=runner.providers)
    names = list(layers.values())

    def capture(batch: np.ndarray) -> dict[str, np.ndarray]:
        feed = batch.astype(np.float16) if runner.input_is_fp16 else batch
        values = session.run(names, {runner.input_name: feed})
        return {layer: np.asarray(value, dtype=np.float32) for layer, value in zip(layers, values)}

    return capture
