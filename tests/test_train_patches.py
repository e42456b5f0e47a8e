"""Patches: a pure function of (seed, step), flipped together, from uint8 pairs in memory."""
import numpy as np
import pytest
import torch

from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.model import TreeFusionNet
from treefuse.train.datasets import ImagePair
from treefuse.train.folded_forward import FoldedTraining
from treefuse.train.losses import derain_loss
from treefuse.train.patches import PatchSampler

RNG = np.random.default_rng(0)


def _pair(key, same=False):
    rain = RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    return ImagePair(key, rain, rain.copy() if same else RNG.integers(0, 256, (40, 56, 3), dtype=np.uint8))


def _sampler(pairs, photos=(), synthetic=0.0, seed=0):
    return PatchSampler(list(pairs), list(photos), 24, 5, synthetic, 0.5, True, seed)


def test_batches_are_a_function_of_seed_and_step():
    sampler = _sampler([_pair("a"), _pair("b")], [RNG.integers(0, 256, (80, 80, 3), dtype=np.uint8)], 0.5)
    rainy, clean = sampler.batch(7)
    assert rainy.shape == clean.shape == (5, 3, 24, 24) and rainy.dtype == np.float32
    again = sampler.batch(7)
    assert np.array_equal(rainy, again[0]) and np.array_equal(clean, again[1])
    assert not np.array_equal(rainy, sampler.batch(8)[0])
    other_seed = PatchSampler(sampler.pairs, sampler.photos, 24, 5, 0.5, 0.5, True, 1)
    assert not np.array_equal(rainy, other_seed.batch(7)[0])


def test_flips_and_crops_keep_pairs_aligned():
    rainy, clean = _sampler([_pair("same", same=True)]).batch(3)
    assert np.array_equal(rainy, clean)


def test_synthetic_patches_are_rainier_than_their_clean_half():
    photo = np.full((90, 90, 3), 100, dtype=np.uint8)
    rainy, clean = _sampler([], [photo], synthetic=1.0).batch(0)
    assert np.allclose(clean, 100 / 255) and (rainy != clean).any()


def test_pairs_smaller_than_a_patch_are_refused():
    tiny = ImagePair("tiny", np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(TreefuseError, match="smaller than a 24x24 patch"):
        _sampler([tiny])


def test_loss_is_zero_for_a_perfect_output_and_weights_mse_and_ssim():
    target = torch.rand(2, 3, 24, 24)
    assert float(derain_loss(target, target)) == pytest.approx(0.0, abs=1e-6)
    worse = derain_loss(target.flip(-1), target)
    assert float(derain_loss(target.flip(-1), target, 1.0, 0.0)) == pytest.approx(
        float(torch.mean((target.flip(-1) - target) ** 2)), rel=1e-5)
    assert float(worse) > 0.1


@pytest.mark.parametrize("dilation_factor", [4, 3])
def test_folded_training_forward_matches_the_model_and_its_gradients(dilation_factor):
    torch.manual_seed(0)
    model = TreeFusionNet(ModelConfig(channels=4, blocks=2, dilation_factor=dilation_factor))
    x = torch.rand(2, 3, 20, 20)
    plain = model(x)
    plain.square().mean().backward()
    plain_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    folded = FoldedTraining(model)(x)
    folded.square().mean().backward()
    assert torch.allclose(plain, folded, atol=1e-5)
    for expected, got in zip(plain_grads, (p.grad for p in model.parameters())):
        assert torch.allclose(expected, got, atol=1e-4, rtol=1e-3)


def test_data_parallel_ranks_get_different_batches():
    sampler = _sampler([_pair("a"), _pair("b")])
    assert not np.array_equal(sampler.batch(2, rank=0)[0], sampler.batch(2, rank=1)[0])
    assert np.array_equal(sampler.batch(2, rank=1)[0], sampler.batch(2, rank=1)[0])
