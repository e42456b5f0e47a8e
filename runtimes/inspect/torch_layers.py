"""Every layer of the folded PyTorch model, by forward hooks: the reference every export is traced from."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch.nn import functional as F

from treefuse.folding import fold
from treefuse.model import Fuse
from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.backends.torch_runner import DTYPES
from treefuse.runtimes.inspect.names import OUTPUT

# `fused_block_features` applies F.relu to the head outside any module; exports show only the activated value.
ACTIVATED_BY_CALLER = {"head": F.relu}


def open_layers(runner: Runner) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function batch -> {layer: output} over the folded model of an active torch runner."""
    dtype = DTYPES[runner.dtype]
    network = fold(runner.loaded.model).to(runner.device, dtype).eval()
    # A fuse's conv ends in the fuse's own ReLU: the fuse names that tensor (as in every export).
    inner_convs = {f"{name}.conv" for name, module in network.named_modules() if isinstance(module, Fuse)}
    named = [(name, module) for name, module in network.named_modules() if name and name not in inner_convs]

    @torch.inference_mode()
    def capture(batch: np.ndarray) -> dict[str, np.ndarray]:
        outputs: dict[str, torch.Tensor] = {}
        hooks = [module.register_forward_hook(_recorder(outputs, name)) for name, module in named]
        try:
            output = network(torch.from_numpy(np.require(batch, requirements="W")).to(runner.device, dtype))
        finally:
            for hook in hooks:
                hook.remove()
        outputs[OUTPUT] = output
        return {name: value.float().cpu().numpy() for name, value in outputs.items()}

    return capture


def _recorder(outputs: dict[str, torch.Tensor], name: str):
    activation = ACTIVATED_BY_CALLER.get(name)

    def hook(module, inputs, output) -> None:
        outputs[name] = activation(output) if activation else output

    return hook
