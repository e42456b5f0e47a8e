"""The network's forward pass with the first-level fuses folded in, differentiably.

`treefuse.folding` rewrites a trained model for inference; here the same rewrite is
computed from the live parameters at every step, so training keeps the original
parameters (and checkpoint layout) while running fewer operations.
"""
from __future__ import annotations

import torch
from torch import nn

from treefuse.folding import folded_block_forward
from treefuse.model import TreeFusionNet, fused_block_features


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
        return x - self.model.tail(fused_block_features(self.model, x, folded_block_forward))
