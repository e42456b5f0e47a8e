"""Tiled derain equals whole-image derain when the overlap covers the receptive field; bad tilings are refused."""
import numpy as np
import pytest
import torch

from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.model import TreeFusionNet
from treefuse.runtimes.applications.tiling import (RECEPTIVE_RADIUS, check_tiling, derain_tiled, edge_weights, receptive_radius,
                                      tile_starts)

EXACT_TOLERANCE = 1e-5  # float32 rounding differs between a tile and the whole image; nothing else may


def _infer(model):
    @torch.inference_mode()
    def run(batch):
        return model(torch.from_numpy(batch)).numpy()
    return run


def _image(height, width, seed=0):
    return np.random.default_rng(seed).random((height, width, 3), dtype=np.float32)


def _whole(infer, image):
    return infer(image.transpose(2, 0, 1)[None].copy())[0].transpose(1, 2, 0)


def test_receptive_radius_is_measured_not_just_computed():
    config = ModelConfig(blocks=2, dilation_factor=2)
    radius = receptive_radius(config)
    assert radius == 5 and RECEPTIVE_RADIUS == 33
    torch.manual_seed(0)
    model = TreeFusionNet(config).eval()
    x = torch.zeros(1, 3, 31, 31, requires_grad=True)
    model(x)[0, :, 15, 15].sum().backward()
    rows, cols = np.nonzero(x.grad.abs().sum(dim=(0, 1)).numpy())
    assert max(15 - rows.min(), rows.max() - 15, 15 - cols.min(), cols.max() - 15) == radius


def test_tiled_equals_untiled_with_a_tiny_model():
    torch.manual_seed(0)
    infer = _infer(TreeFusionNet(ModelConfig(blocks=2, dilation_factor=2)).eval())
    image = _image(40, 56)
    tiled = derain_tiled(infer, image, tile=24, overlap=12, margin=5)
    assert np.abs(tiled - _whole(infer, image)).max() < EXACT_TOLERANCE


@pytest.mark.slow
def test_tiled_equals_untiled_with_the_shipped_model_at_the_default_overlap(shipped_onnx):
    from treefuse.runtimes.backends.registry import make_runner

    with make_runner(f"onnx:{shipped_onnx}") as runner:  # ONNX Runtime: the same network, 20x faster than eager
        image = _image(112, 176)
        whole = _whole(runner.infer, image)
        exact = np.abs(derain_tiled(runner.infer, image, tile=112) - whole).max()
        too_small = np.abs(derain_tiled(runner.infer, image, tile=112, overlap=8) - whole).max()
    assert exact < EXACT_TOLERANCE
    assert too_small > 100 * EXACT_TOLERANCE  # proves the comparison can fail: seams show without enough overlap


def test_tiles_cover_the_image_and_weights_never_all_vanish():
    assert tile_starts(100, 40, 10) == [0, 30, 60] and tile_starts(30, 40, 10) == [0]
    total = np.zeros(100)
    for start in tile_starts(100, 40, 10):
        total[start:start + 40] += edge_weights(start, 40, 100, 10, margin=33)
    assert total.min() > 0


@pytest.mark.parametrize("tile, overlap", [(64, 64), (32, 96), (64, -1)])
def test_tile_not_larger_than_overlap_is_refused(tile, overlap):
    with pytest.raises(TreefuseError):
        check_tiling(tile, overlap)


def test_cli_tile_smaller_than_overlap_is_one_line_exit_2(tmp_path, weights_path, paired_dir, capsys):
    from treefuse.cli import main

    code = main(["derain", "--backend", f"torch:{weights_path}", str(paired_dir / "rain"), "--out",
                 str(tmp_path / "out"), "--tile", "32", "--overlap", "96"])
    assert code == 2 and not (tmp_path / "out").exists()
    assert "--tile 32 must be larger than --overlap 96" in capsys.readouterr().err
