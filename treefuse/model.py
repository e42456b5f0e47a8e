"""Deep Tree-Structured Fusion deraining network (Fu et al.), one file.

    X ──head 3x3+ReLU──> F0 ──block 1──> F1 ── ... ──block L──> FL
                                  \\________ across-block tree of fuses ________/
                                                      │
                                         tail 1x1 conv ─> R,   Y = X − R

A block applies ONE 3x3 kernel at dilations 1..DF (no activation), fuses the maps
with a binary tree of fuse(a, b) = ReLU(1x1 conv on concat(a, b)), adds its input
and applies ReLU. With `sum` fusion the tree becomes a plain sum (the paper's ablations).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from treefuse.config import ModelConfig


def fuse_tree(maps: Sequence[torch.Tensor], fuse: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Fuse adjacent maps pairwise, level by level, until one is left.

    `fuse(i, a, b)` is called with a running node index i = 0, 1, 2, ... in the
    order the nodes are evaluated; an odd map out carries up to the next level.
    """
    level = list(maps)
    node = 0
    while len(level) > 1:
        next_level = []
        for j in range(0, len(level) - 1, 2):
            next_level.append(fuse(node, level[j], level[j + 1]))
            node += 1
        if len(level) % 2:
            next_level.append(level[-1])
        level = next_level
    return level[0]


def tree_node_count(leaves: int) -> int:
    """A binary tree over n leaves has n - 1 fuse nodes."""
    return leaves - 1


class Fuse(nn.Module):
    """fuse(a, b) = ReLU(W * concat(a, b) + b), W a 1x1 conv 2C -> C (equation 5)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, channels, kernel_size=1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(torch.cat([a, b], dim=1)))


def _make_fuses(config: ModelConfig, leaves: int, fusion: str) -> nn.ModuleList:
    count = tree_node_count(leaves) if fusion == "tree" else 0
    return nn.ModuleList(Fuse(config.channels) for _ in range(count))


def _combine(maps: list[torch.Tensor], fuses: nn.ModuleList, fusion: str) -> torch.Tensor:
    if fusion == "sum":
        return torch.stack(maps).sum(dim=0)
    return fuse_tree(maps, lambda i, a, b: fuses[i](a, b))


class DilatedBlock(nn.Module):
    """One shared 3x3 kernel at dilations 1..DF, tree-fused, plus the block input (eq. 2-3)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.dilations = config.dilations
        self.fusion = config.within_fusion
        self.conv = nn.Conv2d(config.channels, config.channels, kernel_size=3)
        self.fuses = _make_fuses(config, len(self.dilations), self.fusion)

    def dilated_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [F.conv2d(x, self.conv.weight, self.conv.bias, padding=d, dilation=d) for d in self.dilations]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fused = _combine(self.dilated_maps(x), self.fuses, self.fusion)
        return F.relu(fused + x)


class TreeFusionNet(nn.Module):
    """The full network: head, L dilated blocks, across-block fusion, tail; returns X − R."""

    def __init__(self, config: ModelConfig | None = None) -> None:
        super().__init__()
        self.config = config or ModelConfig()
        c = self.config
        self.head = nn.Conv2d(c.in_channels, c.channels, kernel_size=3, padding=1)
        self.blocks = nn.ModuleList(DilatedBlock(c) for _ in range(c.blocks))
        self.across_fuses = _make_fuses(c, c.blocks, c.across_fusion)
        self.tail = nn.Conv2d(c.channels, c.in_channels, kernel_size=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The fused block features the tail reads from."""
        return fused_block_features(self, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x - self.tail(self.features(x))


def fused_block_features(net: nn.Module, x: torch.Tensor,
                         run_block: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Head, the chain of blocks, then across-block fusion of every block's output.

    Shared by the trained network, its folded inference copy and the folded training pass
    (which passes `run_block`): all have `head`, `blocks`, `across_fuses` and `config`.
    """
    feature = F.relu(net.head(x))
    block_outputs = []
    for block in net.blocks:
        feature = run_block(block, feature) if run_block else block(feature)
        block_outputs.append(feature)
    return _combine(block_outputs, net.across_fuses, net.config.across_fusion)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
