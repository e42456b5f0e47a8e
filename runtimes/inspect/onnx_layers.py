"""Every layer of an ONNX model on ONNX Runtime: each layer's tensor added as a graph output."""
from __future__ import annotations

from typing import Callable

import numpy as np

from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.inspect.names import layer_tensors


def exposed_model(path) -> tuple[bytes, dict[str, str]]:
    """The model's bytes with every layer's tensor a graph output, and layer -> tensor."""
    import onnx

    model = onnx.load(str(path))
    layers = layer_tensors(model.graph)
    present = {output.name for output in model.graph.output}
    for tensor in layers.values():
        if tensor not in present:  # a float tensor of unknown shape: ORT fills the shape in at run time
            model.graph.output.append(onnx.helper.make_tensor_value_info(tensor, onnx.TensorProto.FLOAT, None))
    return model.SerializeToString(), layers


def open_layers(runner: Runner) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function batch -> {layer: output} for an active ONNX Runtime runner (same options, new session).

    ONNX Runtime fuses no node whose output is a graph output, so the final output of this session
    can differ from the plain one by the fusions it gave up; `diff` reports by how much.
    """
    import onnxruntime as ort

    model_bytes, layers = exposed_model(runner.path)
    session = ort.InferenceSession(model_bytes, runner.session_options(), providers=runner.providers)
    names = list(layers.values())

    def capture(batch: np.ndarray) -> dict[str, np.ndarray]:
        feed = batch.astype(np.float16) if runner.input_is_fp16 else batch
        values = session.run(names, {runner.input_name: feed})
        return {layer: np.asarray(value, dtype=np.float32) for layer, value in zip(layers, values)}

    return capture
