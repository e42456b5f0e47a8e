import pytest
import torch

from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.folding import fold
from treefuse.model import TreeFusionNet, count_parameters


@pytest.mark.parametrize("config, expected", [
    (ModelConfig(), 35_427),
    (ModelConfig(within_fusion="sum"), 35_427 - 8 * 3 * 528),  # NetworkA: no within-block fuses
    (ModelConfig(across_fusion="sum"), 35_427 - 7 * 528),  # NetworkW: no across-block fuses
    (ModelConfig(blocks=6), 448 + 6 * 3904 + 5 * 528 + 51),
    (ModelConfig(dilation_factor=6), 448 + 8 * (2320 + 5 * 528) + 7 * 528 + 51),
])
def test_parameter_counts(config, expected):
    assert count_parameters(TreeFusionNet(config)) == expected


def test_block_shares_one_kernel_across_dilations():
    block = TreeFusionNet().blocks[0]
    assert [p.shape for p in block.conv.parameters()] == [(16, 16, 3, 3), (16,)]
    maps = block.dilated_maps(torch.rand(1, 16, 20, 20))
    assert len(maps) == 4
    with torch.no_grad():
        block.conv.weight.add_(1.0)  # one kernel changed -> every dilated map changes
    changed = block.dilated_maps(torch.rand(1, 16, 20, 20))
    assert all(not torch.allclose(a, b) for a, b in zip(maps, changed))


def test_output_is_input_minus_residual():
    model = TreeFusionNet().eval()
    with torch.no_grad():
        model.tail.weight.zero_()
        model.tail.bias.zero_()
        x = torch.rand(1, 3, 17, 23)
        assert torch.equal(model(x), x)


@pytest.mark.parametrize("config", [ModelConfig(), ModelConfig(dilation_factor=3), ModelConfig(across_fusion="sum"),
                                    ModelConfig(within_fusion="sum")])
def test_fold_is_exact(config):
    torch.manual_seed(1)
    model = TreeFusionNet(config).eval()
    x = torch.rand(2, 3, 31, 45)
    with torch.no_grad():
        difference = (model(x) - fold(model)(x)).abs().max().item()
    assert difference < 1e-5


def test_fold_removes_first_level_fuses():
    folded = fold(TreeFusionNet())
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in folded.modules())
    assert convs == 1 + 8 * (4 + 1) + 7 + 1  # head, 4 folded dilated convs + 1 fuse per block, across, tail


@pytest.mark.parametrize("bad", [{"blocks": 0}, {"within_fusion": "concat"}, {"dilation_factor": "4"}, {"depth": 3}])
def test_bad_config_is_refused(bad):
    with pytest.raises(TreefuseError):
        ModelConfig.from_dict(bad)
