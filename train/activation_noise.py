"""INT8-robust training: one 8-bit step of uniform noise at every activation ONNX Runtime's INT8 model quantizes.

The ONNX INT8 export (export/onnx/quantize.py, ONNX Runtime's layout) runs the folded network after
exact rewrites (each Concat feeding a 1x1 fuse split into one conv per input and an Add) and quantizes,
uint8 asymmetric with a min/max range from a treefuse calibration set: the input, the head's ReLU,
every dilated conv's output, every sum (its ReLU folded into the u8 range), every half of a split
fuse, and the tail's output; the final X - R stays float. `quantized_forward` computes that graph
from the live parameters and calls `at(name, tensor)` at each of those tensors. Calibration keeps the
envelope of every tensor's min and max over the set (one image at a time, as ORT's MinMax calibrator
does); one step is then (max(hi, 0) - min(lo, 0)) / 255, ORT's scale. Training adds U(-step/2, step/2),
the distribution of the rounding error, so the weights learn to bear it; eval mode adds nothing.

The steps come from the weights a run starts from and stay fixed for the run, so a resumed run adds
the same noise a straight one does (the noise is drawn from torch's generator, which checkpoints keep).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from treefuse.errors import TreefuseError
from treefuse.folding import Tap, folded_block_forward
from treefuse.model import Fuse, TreeFusionNet, fuse_tree

U8_LEVELS = 255


def _split_fuse(fuse: Fuse, a: torch.Tensor, b: torch.Tensor, name: str, at: Tap) -> torch.Tensor:
    """fuse(a, b) as the rewritten graph runs it: ReLU(W_a a + bias + W_b b), each term quantized."""
    channels = a.shape[1]
    weight = fuse.conv.weight
    part0 = at(f"{name}.part0", F.conv2d(a, weight[:, :channels], fuse.conv.bias))
    part1 = at(f"{name}.part1", F.conv2d(b, weight[:, channels:]))
    return at(f"{name}.sum", F.relu(part0 + part1))


def quantized_forward(model: TreeFusionNet, x: torch.Tensor, at: Tap) -> torch.Tensor:
    """The folded forward pass with `at` applied to every tensor the ONNX Runtime INT8 model quantizes."""
    config = model.config
    if config.within_fusion != "tree" or config.across_fusion != "tree" or len(config.dilations) < 2:
        raise TreefuseError("optim.activation_noise follows the INT8 export of the tree-fused network; "
                            "this model config has no tree fusion to fold")
    feature = at("head", F.relu(model.head(at("input", x))))
    outputs = []
    for index, block in enumerate(model.blocks):
        feature = folded_block_forward(block, feature, at, f"blocks.{index}",
                                       lambda fuse, a, b, fuse_name: _split_fuse(fuse, a, b, fuse_name, at))
        outputs.append(feature)
    fused = fuse_tree(outputs, lambda i, a, b: _split_fuse(model.across_fuses[i], a, b, f"across.{i}", at))
    return x - at("tail", model.tail(fused))  # the image X stays float in the export: only the residual is quantized


@torch.no_grad()
def calibrated_steps(model: TreeFusionNet, images: np.ndarray, device: torch.device | str = "cpu") -> dict[str, float]:
    """One u8 step per quantized tensor: (max(hi, 0) - min(lo, 0)) / 255 over the envelope of N x 3 x H x W images."""
    lows: dict[str, float] = {}
    highs: dict[str, float] = {}

    def observe(name: str, tensor: torch.Tensor) -> torch.Tensor:
        low, high = tensor.min().item(), tensor.max().item()
        lows[name] = min(low, lows.get(name, low))
        highs[name] = max(high, highs.get(name, high))
        return tensor

    for image in images:  # one at a time, as the export's calibrator feeds them
        quantized_forward(model, torch.tensor(image[None], device=device), observe)
    return {name: (max(highs[name], 0.0) - min(lows[name], 0.0)) / U8_LEVELS for name in lows}


class ActivationNoise(nn.Module):
    """Runs the folded network; in training mode adds U(-step/2, step/2) at every quantized tensor."""

    def __init__(self, model: TreeFusionNet, steps: dict[str, float]) -> None:
        super().__init__()
        self.model = model
        self.steps = dict(steps)

    def add_noise(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor plus one step of uniform noise (training), or as it is (eval)."""
        if not self.training:
            return tensor
        return tensor + (torch.rand_like(tensor) - 0.5) * self.steps[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantized_forward(self.model, x, self.add_noise)
