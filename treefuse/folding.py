"""Exact rewrites of the network for inference (the ECBSR `rep_params` idea).

Within a block the dilated maps share one kernel K and have no activation before the
first-level fuses, so  Wa·(K *_da x + k) + Wb·(K *_db x + k) + b  is a sum of two
dilated 3x3 convolutions with kernels Wa∘K and Wb∘K: the 1x1 fuse disappears.
The tail's subtraction folds into negated tail weights (X − R = X + (−W)*F − b).
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

from treefuse.model import DilatedBlock, Fuse, TreeFusionNet, fuse_tree, fused_block_features


def _compose_1x1(fuse_weight_half: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The 3x3 kernel equal to applying `kernel` then the 1x1 conv `fuse_weight_half`."""
    return torch.einsum("om,mikl->oikl", fuse_weight_half[:, :, 0, 0], kernel)


def fold_pair(kernel: torch.Tensor, kernel_bias: torch.Tensor, fuse_weight: torch.Tensor,
              fuse_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Wa∘K, Wb∘K, bias) of the two dilated convs equal to one first-level fuse; differentiable."""
    channels = kernel.shape[0]
    half_a, half_b = fuse_weight[:, :channels], fuse_weight[:, channels:]
    bias = (half_a + half_b)[:, :, 0, 0] @ kernel_bias + fuse_bias
    return _compose_1x1(half_a, kernel), _compose_1x1(half_b, kernel), bias


Tap = Callable[[str, torch.Tensor], torch.Tensor]  # (tensor's name, tensor) -> the tensor the network goes on with


def untapped(name: str, tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def folded_block_forward(block: DilatedBlock, x: torch.Tensor, at: Tap = untapped, name: str = "",
                         upper_fuse: Callable[[Fuse, torch.Tensor, torch.Tensor, str], torch.Tensor] | None = None,
                         weight_at: Tap = untapped) -> torch.Tensor:
    """A block's output with its first-level fuses folded, from its live parameters (for training).

    `at` sees each dilated conv, each pair's sum and the block's output by name (INT8-robust training adds
    quantization noise there), `weight_at` each folded conv weight as the conv uses it; `upper_fuse(fuse, a, b,
    name)` computes the upper fuses (default: the fuse)."""
    dilations = list(block.dilations)
    pair_count = len(dilations) // 2
    level = []
    for j in range(pair_count):
        weight_a, weight_b, bias = fold_pair(block.conv.weight, block.conv.bias, block.fuses[j].conv.weight,
                                             block.fuses[j].conv.bias)
        da, db = dilations[2 * j], dilations[2 * j + 1]
        weight_a, weight_b = weight_at(f"{name}.pair{j}.a", weight_a), weight_at(f"{name}.pair{j}.b", weight_b)
        conv_a = at(f"{name}.pair{j}.a", F.conv2d(x, weight_a, None, padding=da, dilation=da))
        conv_b = at(f"{name}.pair{j}.b", F.conv2d(x, weight_b, bias, padding=db, dilation=db))
        level.append(at(f"{name}.pair{j}.sum", F.relu(conv_a + conv_b)))
    if len(dilations) % 2:
        d = dilations[-1]
        weight = weight_at(f"{name}.leftover", block.conv.weight)
        level.append(at(f"{name}.leftover", F.conv2d(x, weight, block.conv.bias, padding=d, dilation=d)))
    upper = upper_fuse or (lambda fuse, a, b, _: fuse(a, b))
    fused = fuse_tree(level, lambda i, a, b: upper(block.fuses[pair_count + i], a, b, f"{name}.upper{i}"))
    return at(f"{name}.out", F.relu(fused + x))


class FoldedPair(nn.Module):
    """ReLU(conv_da(x; Wa∘K) + conv_db(x; Wb∘K) + bias): one folded first-level fuse."""

    def __init__(self, block: DilatedBlock, fuse: Fuse, dilation_a: int, dilation_b: int) -> None:
        super().__init__()
        channels = block.conv.out_channels
        self.conv_a = nn.Conv2d(channels, channels, 3, padding=dilation_a, dilation=dilation_a, bias=False)
        self.conv_b = nn.Conv2d(channels, channels, 3, padding=dilation_b, dilation=dilation_b)
        with torch.no_grad():
            weight_a, weight_b, bias = fold_pair(block.conv.weight, block.conv.bias, fuse.conv.weight, fuse.conv.bias)
            self.conv_a.weight.copy_(weight_a)
            self.conv_b.weight.copy_(weight_b)
            self.conv_b.bias.copy_(bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv_a(x) + self.conv_b(x))


class FoldedBlock(nn.Module):
    """A DilatedBlock whose first level of fuses is folded into dilated convolutions."""

    def __init__(self, block: DilatedBlock) -> None:
        super().__init__()
        dilations = list(block.dilations)
        pair_count = len(dilations) // 2
        self.pairs = nn.ModuleList(
            FoldedPair(block, block.fuses[j], dilations[2 * j], dilations[2 * j + 1]) for j in range(pair_count))
        # An odd dilation out has no partner at the first level: it stays a plain dilated conv.
        self.leftover = None
        if len(dilations) % 2:
            d = dilations[-1]
            self.leftover = nn.Conv2d(block.conv.in_channels, block.conv.out_channels, 3, padding=d, dilation=d)
            self.leftover.load_state_dict(block.conv.state_dict())
        self.upper_fuses = nn.ModuleList(block.fuses[pair_count:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = [pair(x) for pair in self.pairs]
        if self.leftover is not None:
            level.append(self.leftover(x))
        fused = fuse_tree(level, lambda i, a, b: self.upper_fuses[i](a, b))
        return F.relu(fused + x)


class FoldedTreeFusionNet(nn.Module):
    """Same function as TreeFusionNet, fewer operations: what the exporters trace."""

    def __init__(self, model: TreeFusionNet) -> None:
        super().__init__()
        self.config = model.config
        self.head = model.head
        foldable = model.config.within_fusion == "tree" and len(model.config.dilations) > 1
        self.blocks = nn.ModuleList(FoldedBlock(b) if foldable else b for b in model.blocks)
        self.across_fuses = model.across_fuses
        self.negated_tail = nn.Conv2d(model.tail.in_channels, model.tail.out_channels, 1)
        with torch.no_grad():
            self.negated_tail.weight.copy_(-model.tail.weight)
            self.negated_tail.bias.copy_(-model.tail.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.negated_tail(fused_block_features(self, x))


def fold(model: TreeFusionNet) -> FoldedTreeFusionNet:
    """Return an inference-only copy of `model` with every exact rewrite applied."""
    return FoldedTreeFusionNet(copy.deepcopy(model)).eval()
