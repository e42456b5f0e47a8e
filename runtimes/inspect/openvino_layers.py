"""Every layer of an ONNX model on OpenVINO: an output added on each layer's tensor (OpenVINO keeps ONNX names)."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.inspect.names import layer_tensors


def open_layers(runner: Runner) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function batch -> {layer: output} for an active OpenVINO runner (same precision hint and threads)."""
    import onnx

    layers = layer_tensors(onnx.load(str(runner.path)).graph)
    model = runner.model.clone()
    known = {name for op in model.get_ops() for port in op.outputs() for name in port.get_names()}
    exposed = {layer: tensor for layer, tensor in layers.items() if tensor in known}
    model.add_outputs([tensor for tensor in exposed.values() if tensor not in _output_names(model)])
    compiled: dict[tuple[int, ...], Any] = {}

    def capture(batch: np.ndarray) -> dict[str, np.ndarray]:
        if batch.shape not in compiled:
            compiled[batch.shape] = runner.compile_for(model, batch.shape)
        results = compiled[batch.shape](batch)
        by_name = {name: value for port, value in results.items() for name in port.get_names()}
        return {layer: np.asarray(by_name[tensor], dtype=np.float32) for layer, tensor in exposed.items()
                if tensor in by_name}

    return capture


def _output_names(model: Any) -> set[str]:
    return {name for port in model.outputs for name in port.get_names()}
