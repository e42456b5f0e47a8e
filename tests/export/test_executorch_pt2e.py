"""The PT2E INT8 flows (ExecuTorch, LiteRT) leave exactly the across-block fuse tree in float."""
import torch

from treefuse.config import ModelConfig
from treefuse.export.pt2e.float_nodes import outside_modules
from treefuse.folding import fold
from treefuse.model import TreeFusionNet


def test_the_filter_picks_out_the_across_block_fuses_and_nothing_else():
    config = ModelConfig(channels=4, blocks=3)
    graph = torch.export.export(fold(TreeFusionNet(config)), (torch.rand(1, 3, 16, 16),)).module().graph
    calls = [node for node in graph.nodes if node.op == "call_function"]
    in_float = [node for node in calls if not outside_modules()(node)]
    # Each across-block fuse is concat -> 1x1 conv -> ReLU; a tree over 3 blocks has 2 of them.
    assert sorted(str(node.target).split(".")[1] for node in in_float) == sorted(["cat", "conv2d", "relu"] * 2)
    assert len(calls) > len(in_float)
