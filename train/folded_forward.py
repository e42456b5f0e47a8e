"""The network's forward pass with the first-level fuses folded in, differentiably.

`treefuse.folding` rewrites a trained model for inference; here the same rewrite is
computed from the live parameters at every step, so training keeps the original
parameters (and checkpoint layout) while running fewer operations.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from treefuse.model import DilatedBlock, TreeFusionNet, _combine, fuse_tree


def _folded_block(block: DilatedBlock, x: torch.Tensor) -> torch.Tensor:
    kernel, kernel_bias = block.conv.weight, block.conv.bias
    channels = kernel.shape[0]
    dilations = list(block.dilations)
    level = []
    for j in range(len(dilations) // 2):
        fuse = block.fuses[j].conv
        half_a, half_b = fuse.weight[:, :channels, 0, 0], fuse.weight[:, channels:, 0, 0]
        weight_a = torch.einsum("om,mikl->oikl", half_a, kernel)
        weight_b = torch.einsum("om,mikl->oikl", half_b, kernel)
        bias = (half_a + half_b) @ kernel_bias + fuse.bias
        da, db = dilations[2 * j], dilations[2 * j + 1]
        level.append(F.relu(F.conv2d(x, weight_a, None, padding=da, dilation=da)
                            + F.conv2d(x, weight_b, bias, padding=db, dilation=db)))
    pair_count = len(dilations) // 2
    if len(dilations) % 2:
        d = dilations[-1]
        level.append(F.conv2d(x, kernel, kernel_bias, padding=d, dilation=d))
    fused = fuse_tree(level, lambda i, a, b: block.fuses[pair_count + i](a, b))
    return F.relu(fused + x)


class FoldedTraining(nn.Module):
    """Wraps a TreeFusionNet (sharing its parameters) and runs the folded forward pass."""

    def __init__(self, model: TreeFusionNet) -> None:
        super().__init__()
        self.model = model
        config = model.config
        self.foldable = config.within_fusion == "tree" and len(config.dilations) > 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.foldable:
            return self.model(x)
        model = self.model
        feature = F.relu(model.head(x))
        block_outputs = []
        for block in model.blocks:
            feature = _folded_block(block, feature)
            block_outputs.append(feature)
        fused = _combine(block_outputs, model.across_fuses, model.config.across_fusion)
        return x - model.tail(fused)
