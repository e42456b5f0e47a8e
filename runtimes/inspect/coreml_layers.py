"""Layers of a Core ML package on treefuse's MIL evaluator: its convolutions, matched by execution order.

coremltools names variables after TorchScript values (`var_67`, `input_5`; a quantized program
sometimes `blocks_2_pairs_0_conv_a`), so names cannot be trusted. Its convolutions run in the order
the traced folded model ran them, so the k-th `conv` op is the k-th Conv2d the model runs: that
names every convolution layer (a fuse by its conv, the head, the tail) and leaves the adds of
pairs and blocks unmatched (`diff` lists them). A conv's value is followed through a lone ReLU and
a quantize -> dequantize pair, as in ONNX: the value the next layer reads.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.folding import fold
from treefuse.model import Fuse, TreeFusionNet
from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.backends.coreml_mil import evaluate_all
from treefuse.runtimes.inspect.names import OUTPUT

FOLLOWED = ("relu", "quantize", "dequantize")  # each passes its one value on


def conv_layers(config: ModelConfig) -> list[str]:
    """The folded model's Conv2d layers in the order it runs them (a fuse's conv named by its fuse)."""
    network = fold(TreeFusionNet(config)).eval()
    fuses = {name for name, module in network.named_modules() if isinstance(module, Fuse)}
    order: list[str] = []
    hooks = [module.register_forward_hook(lambda *_, name=name: order.append(name))
             for name, module in network.named_modules() if isinstance(module, torch.nn.Conv2d)]
    with torch.inference_mode():
        network(torch.zeros(1, config.in_channels, 16, 16))
    for hook in hooks:
        hook.remove()
    return [name.rpartition(".")[0] if name.rpartition(".")[0] in fuses else name for name in order]


def program_layers(main: Any, config: ModelConfig) -> dict[str, str]:
    """layer name -> the MIL variable holding its output; refused when the conv counts differ."""
    readers: dict[str, list[Any]] = {}
    for op in main.operations:
        for var in op.inputs.values():
            for item in var if isinstance(var, (list, tuple)) else [var]:
                readers.setdefault(item.name, []).append(op)
    convs = [op.outputs[0].name for op in main.operations if op.op_type == "conv"]
    names = conv_layers(config)
    if len(convs) != len(names):
        raise TreefuseError(f"coreml: the program runs {len(convs)} convolutions, the model of its config "
                            f"{len(names)}; it is not a treefuse export of that config")
    return {**{layer: _settled(var, readers) for layer, var in zip(names, convs)}, OUTPUT: main.outputs[0].name}


def _settled(var: str, readers: dict[str, list[Any]]) -> str:
    while len(readers.get(var, [])) == 1 and readers[var][0].op_type in FOLLOWED:
        var = readers[var][0].outputs[0].name
    return var


def open_layers(runner: Runner) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function batch -> {layer: output} for an active Core ML runner (its program on the MIL evaluator)."""
    if not runner.artifact().config:
        raise TreefuseError(f"coreml: {runner.path} carries no model config; re-export it with `treefuse export coreml`")
    layers = program_layers(runner.package.main, ModelConfig.from_dict(runner.artifact().config))

    def capture(batch: np.ndarray) -> dict[str, np.ndarray]:
        values = evaluate_all(runner.package, np.ascontiguousarray(batch[:1]))
        return {layer: values[var].float().numpy() for layer, var in layers.items()}

    return capture
