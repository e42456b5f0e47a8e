"""Every layer of a .tflite on LiteRT: all tensors preserved, named back to the folded model's layers.

LiteRT names a tensor by its module path with each step as `<class>_<attribute>`
(`...FoldedBlock_3/treefuse.folding.FoldedPair_0/torch.nn.modules.conv.Conv2d_conv_a;1`); the
folded model of the artifact's own config translates those steps back to `blocks.3.pairs.0.conv_a`.
XNNPACK keeps the tensors inside its delegate to itself, so the capture runs LiteRT's built-in
kernels: `diff` reports how far their final output is from the XNNPACK run's.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.folding import fold
from treefuse.model import TreeFusionNet
from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.inspect.names import OUTPUT


def litert_paths(config: ModelConfig) -> dict[str, str]:
    """LiteRT's module path ('FoldedBlock_3/FoldedPair_0/Conv2d_conv_a', classes unqualified) -> layer name."""
    network = fold(TreeFusionNet(config))
    paths = {"": ""}
    for name, module in network.named_modules():
        if not name:
            continue
        parent, _, attribute = name.rpartition(".")
        parent_module = network.get_submodule(parent) if parent else network
        if isinstance(parent_module, torch.nn.ModuleList):  # a list's items hang off the list's owner
            parent = parent.rpartition(".")[0]
        step = f"{type(module).__name__}_{attribute}"
        owner = next(path for path, layer in paths.items() if layer == parent)
        paths[f"{owner}/{step}" if owner else step] = name
    return paths


def _module_paths(tensor_name: str) -> list[str]:
    """'a.Root/b.Block_3/c.Conv2d_conv_a;1;;a.Root' -> ['Block_3/Conv2d_conv_a', '']: each location a fused op
    came from (';;' apart), root dropped, classes unqualified."""
    locations = [location.split(";")[0] for location in tensor_name.split(";;")]
    return ["/".join(step.rsplit(".", 1)[-1] for step in location.split("/")[1:]) for location in locations]


def open_layers(runner: Runner) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function batch -> {layer: float output, NCHW} for an active LiteRT runner (built-in kernels, all tensors kept)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    if not runner.artifact().config:
        raise TreefuseError(f"litert: {runner.path} carries no model config; re-export it with `treefuse export litert`")
    paths = litert_paths(ModelConfig.from_dict(runner.artifact().config))
    interpreter = Interpreter(model_path=str(runner.path), num_threads=runner.threads or None,
                              experimental_preserve_all_tensors=True,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    layer_index: dict[str, int] = {}
    for op in interpreter._get_ops_details():  # execution order: a later op of the same layer is its output
        for index in op["outputs"]:
            # A fused conv + ReLU names both places; the ReLU of the head sits at the root, outside any layer.
            layer = next((paths[p] for p in _module_paths(details[index]["name"]) if paths.get(p)), None)
            if layer:
                layer_index[layer] = int(index)
    output_index = interpreter.get_output_details()[0]["index"]
    input_index = interpreter.get_input_details()[0]["index"]
    shape: list[tuple[int, ...]] = []

    def capture(batch: np.ndarray) -> dict[str, np.ndarray]:
        if shape != [batch.shape]:
            interpreter.resize_tensor_input(input_index, list(batch.shape))
            interpreter.allocate_tensors()
            shape[:] = [batch.shape]
        interpreter.set_tensor(input_index, np.ascontiguousarray(batch))
        interpreter.invoke()
        layers = {layer: _as_float_nchw(interpreter.get_tensor(index), details[index], batch.shape)
                  for layer, index in layer_index.items()}
        return {**layers, OUTPUT: interpreter.get_tensor(output_index).copy()}

    return capture


def _as_float_nchw(value: np.ndarray, detail: dict[str, Any], input_shape: tuple[int, ...]) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    value = (value.astype(np.float32) - zero_point) * scale if scale else value.astype(np.float32)
    if value.ndim == 4 and value.shape[1:3] == tuple(input_shape[2:]):  # NHWC inside LiteRT
        value = value.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(value)
