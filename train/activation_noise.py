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

With `+weights-7bit`, each conv weight of that graph (the folded and split convs) also gets one step of ONNX
Runtime's 7-bit symmetric per-channel grid, max|w| / 64 of its output channel, from the live weight.

The activation steps come from the weights a run starts from and stay fixed for the run, so a resumed run adds
the same noise a straight one does (the noise is drawn from torch's generator, which checkpoints keep).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from treefuse.errors import TreefuseError
from treefuse.folding import Tap, folded_block_forward, untapped
from treefuse.model import Fuse, TreeFusionNet, fuse_tree

U8_LEVELS = 255


def _split_fuse(fuse: Fuse, a: torch.Tensor, b: torch.Tensor, name: str, at: Tap, weight_at: Tap) -> torch.Tensor:
    """fuse(a, b) as the rewritten graph runs it: ReLU(W_a a + bias + W_b b), each term quantized."""
    channels = a.shape[1]
    weight = fuse.conv.weight  # each half is its own conv in the export, with its own per-channel weight scales
    part0 = at(f"{name}.part0", F.conv2d(a, weight_at(f"{name}.part0", weight[:, :channels]), fuse.conv.bias))
    part1 = at(f"{name}.part1", F.conv2d(b, weight_at(f"{name}.part1", weight[:, channels:])))
    return at(f"{name}.sum", F.relu(part0 + part1))


def quantized_forward(model: TreeFusionNet, x: torch.Tensor, at: Tap, weight_at: Tap = untapped) -> torch.Tensor:
    """The folded forward pass with `at` applied to every tensor the ONNX Runtime INT8 model quantizes, and
    `weight_at` to the weight of every conv it runs (the weights it quantizes per output channel)."""
    config = model.config
    if config.within_fusion != "tree" or config.across_fusion != "tree" or len(config.dilations) < 2:
        raise TreefuseError("optim.activation_noise follows the INT8 export of the tree-fused network; "
                            "this model config has no tree fusion to fold")
    head, tail = model.head, model.tail
    feature = at("head", F.relu(F.conv2d(at("input", x), weight_at("head", head.weight), head.bias,
                                         padding=head.padding)))
    outputs = []
    for index, block in enumerate(model.blocks):
        feature = folded_block_forward(block, feature, at, f"blocks.{index}",
                                       lambda fuse, a, b, name: _split_fuse(fuse, a, b, name, at, weight_at), weight_at)
        outputs.append(feature)
    fused = fuse_tree(outputs, lambda i, a, b: _split_fuse(model.across_fuses[i], a, b, f"across.{i}", at, weight_at))
    residual = F.conv2d(fused, weight_at("tail", tail.weight), tail.bias, padding=tail.padding)
    return x - at("tail", residual)  # the image X stays float in the export: only the residual is quantized


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
    """Runs the folded network; in training mode adds U(-step/2, step/2) at every quantized tensor and, with
    `weight_levels`, one step of each conv weight's symmetric per-channel grid (max|w| / levels) to that weight."""

    def __init__(self, model: TreeFusionNet, steps: dict[str, float], weight_levels: int = 0) -> None:
        super().__init__()
        self.model = model
        self.steps = dict(steps)
        self.weight_levels = weight_levels  # 0: weights exact; 64: ONNX Runtime's 7-bit weights (-64..64)

    def add_weight_noise(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        """The weight plus U(-s/2, s/2), s = max|w| / levels of its output channel (training), or as it is."""
        if not self.training or not self.weight_levels:
            return weight
        step = weight.detach().abs().amax(dim=(1, 2, 3), keepdim=True) / self.weight_levels
        return weight + (torch.rand_like(weight) - 0.5) * step

    def add_noise(self, name: str, tensor: torch.Tensor) -> torch.Tensor:
        """The tensor plus one step of uniform noise (training), or as it is (eval)."""
        if not self.training:
            return tensor
        return tensor + (torch.rand_like(tensor) - 0.5) * self.steps[name]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return quantized_forward(self.model, x, self.add_noise, self.add_weight_noise)
