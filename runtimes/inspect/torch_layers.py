"""Every layer of the folded PyTorch model, by forward hooks: the reference every export is traced from."""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from treefuse.folding import FoldedTreeFusionNet, fold
from treefuse.model import Fuse
from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.backends.torch_runner import DTYPES
from treefuse.runtimes.inspect.names import OUTPUT

HEAD = "head"


def open_layers(runner: Runner) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function batch -> {layer: output} over the folded model of an active torch runner."""
    dtype = DTYPES[runner.dtype]
    network = fold(runner.loaded.model).to(runner.device, dtype).eval()

    @torch.inference_mode()
    def capture(batch: np.ndarray) -> dict[str, np.ndarray]:
        with recorded_layers(network) as outputs:
            output = network(torch.from_numpy(np.require(batch, requirements="W")).to(runner.device, dtype))
        outputs[OUTPUT] = output
        return {name: value.float().cpu().numpy() for name, value in outputs.items()}

    return capture


@contextlib.contextmanager
def recorded_layers(network: FoldedTreeFusionNet) -> Iterator[dict[str, torch.Tensor]]:
    """While the block runs, every layer's output lands in the dict under its name, in execution order.

    Hooks only read tensors the network makes, so a network traced inside the block (torch.export)
    computes exactly what it computes without them."""
    outputs: dict[str, torch.Tensor] = {}
    # `fused_block_features` applies F.relu to the head outside any module: the first block's input is that value.
    hooks = [network.blocks[0].register_forward_pre_hook(_input_recorder(outputs, HEAD))]
    hooks += [module.register_forward_hook(_recorder(outputs, name)) for name, module in layer_modules(network)]
    try:
        yield outputs
    finally:
        for hook in hooks:
            hook.remove()


def layer_modules(network: nn.Module) -> list[tuple[str, nn.Module]]:
    """The folded model's layers but the head, by module path."""
    # A fuse's conv ends in the fuse's own ReLU: the fuse names that tensor (as in every export).
    inner_convs = {f"{name}.conv" for name, module in network.named_modules() if isinstance(module, Fuse)}
    return [(name, module) for name, module in network.named_modules()
            if name and name != HEAD and name not in inner_convs]


def _input_recorder(outputs: dict[str, torch.Tensor], name: str):
    def hook(module, inputs) -> None:
        outputs[name] = inputs[0]

    return hook


def _recorder(outputs: dict[str, torch.Tensor], name: str):
    def hook(module, inputs, output) -> None:
        outputs[name] = output

    return hook
