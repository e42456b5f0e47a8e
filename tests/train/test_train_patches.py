"""Patches: a pure function of (seed, step), flipped together, from uint8 pairs in memory."""
import numpy as np
import pytest
import torch

from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.model import TreeFusionNet
from treefuse.train.datasets import ImagePair
from treefuse.train.device_patches import DevicePatchSampler
from treefuse.train.folded_forward import FoldedTraining
from treefuse.train.losses import derain_loss
from treefuse.train.patches import PatchSampler
from treefuse.train.synthetic_pool import render_pool

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


def _pooled_sampler(flips=True, synthetic=0.4):
    photos = [RNG.integers(0, 256, (70, 64, 3), dtype=np.uint8), RNG.integers(0, 256, (90, 120, 3), dtype=np.uint8)]
    pool = render_pool(photos, 6, 48, 0.5, seed=3, progress=False)
    pairs = [_pair("a"), ImagePair("b", *RNG.integers(0, 256, (2, 33, 70, 3), dtype=np.uint8))]
    return PatchSampler(pairs, photos, 24, 7, synthetic, 0.5, flips, 0, pool)


def test_pool_is_a_function_of_seed_and_index_and_rainy():
    photos = [RNG.integers(0, 256, (70, 64, 3), dtype=np.uint8)]
    pool = render_pool(photos, 3, 48, 1.0, seed=3, progress=False)
    again = render_pool(photos, 4, 48, 1.0, seed=3, progress=False)
    assert all(np.array_equal(a.rain, b.rain) for a, b in zip(pool, again))
    assert not np.array_equal(pool[0].rain, render_pool(photos, 1, 48, 1.0, seed=4, progress=False)[0].rain)
    assert pool[0].rain.shape == (48, 48, 3) and pool[0].rain.dtype == np.uint8
    assert all((p.rain != p.clean).any() for p in pool)


def test_pooled_batches_come_from_pool_and_pairs():
    sampler = _pooled_sampler()
    draws = [d for step in range(20) for d in sampler.draws(step)]
    assert {d.index < len(sampler.pairs) for d in draws} == {True, False}
    assert all(0 <= d.index < len(sampler.banks()) for d in draws)


def test_live_rendering_cannot_be_planned():
    with pytest.raises(TreefuseError, match="synthetic_pool"):
        _sampler([_pair("a")], [RNG.integers(0, 256, (80, 80, 3), dtype=np.uint8)], 0.5).draws(0)


@pytest.mark.parametrize("flips,synthetic", [(True, 0.4), (False, 0.4), (True, 0.0), (True, 1.0)])
def test_device_sampler_cuts_the_host_batches_bit_for_bit(flips, synthetic):
    sampler = _pooled_sampler(flips, synthetic)
    on_device = DevicePatchSampler(sampler, torch.device("cpu"))
    for step, rank in [(0, None), (5, None), (5, 1), (11, 0)]:
        host_rainy, host_clean = sampler.batch(step, rank)
        rainy, clean = on_device.batch(step, rank)
        assert rainy.dtype == torch.float32 and rainy.is_contiguous(memory_format=torch.channels_last)
        assert np.array_equal(rainy.numpy(), host_rainy) and np.array_equal(clean.numpy(), host_clean)


def test_device_sampler_refuses_live_rendering():
    sampler = _sampler([_pair("a")], [RNG.integers(0, 256, (80, 80, 3), dtype=np.uint8)], 0.5)
    with pytest.raises(TreefuseError, match="data.synthetic_pool"):
        DevicePatchSampler(sampler, torch.device("cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_device_sampler_on_cuda_matches_the_host():
    sampler = _pooled_sampler()
    rainy, clean = DevicePatchSampler(sampler, torch.device("cuda")).batch(4)
    assert np.array_equal(rainy.cpu().numpy(), sampler.batch(4)[0])
