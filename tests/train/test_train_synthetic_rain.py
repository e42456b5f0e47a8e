"""Synthetic rain: seeded, recorded, in range, heavy enough to look like Rain100H."""
import numpy as np
import pytest

from treefuse.errors import TreefuseError
from treefuse.metrics import calculate_psnr
from treefuse.data.synthetic_rain import RainParams, add_synthetic_rain, streak_kernel


def _photo(seed=0, size=96):
    rng = np.random.default_rng(seed)
    # A smooth mid-tone image, so the rain (not the texture) decides the PSNR.
    base = np.linspace(0.2, 0.6, size, dtype=np.float32)[None, :, None]
    return np.clip(base + 0.05 * rng.standard_normal((size, size, 3)).astype(np.float32), 0, 1)


def test_output_shape_range_and_params_recorded():
    clean = _photo()
    rainy, params = add_synthetic_rain(clean, np.random.default_rng(1))
    assert rainy.shape == clean.shape and rainy.dtype == np.float32
    assert rainy.min() >= 0 and rainy.max() <= 1
    assert RainParams(**params.to_dict()) == params


def test_params_reproduce_the_rendering_exactly():
    clean = _photo()
    rainy, params = add_synthetic_rain(clean, np.random.default_rng(2))
    again, _ = add_synthetic_rain(clean, np.random.default_rng(999), RainParams(**params.to_dict()))
    assert np.array_equal(rainy, again)


def test_same_seed_same_rain_other_seed_other_rain():
    clean = _photo()
    first, _ = add_synthetic_rain(clean, np.random.default_rng(3))
    second, _ = add_synthetic_rain(clean, np.random.default_rng(3))
    third, _ = add_synthetic_rain(clean, np.random.default_rng(4))
    assert np.array_equal(first, second) and not np.array_equal(first, third)


def test_rain_only_brightens_without_haze():
    clean = _photo()
    rainy, _ = add_synthetic_rain(clean, np.random.default_rng(0), RainParams(haze=0.0, density=0.01))
    assert (rainy >= clean - 1e-6).all() and (rainy > clean + 0.05).any()


def test_heavy_rain_reaches_rain100h_levels():
    clean = _photo(size=160)
    rng = np.random.default_rng(5)
    heavy = [calculate_psnr(add_synthetic_rain(clean, rng, RainParams.sample(rng, heavy=True))[0], clean)
             for _ in range(6)]
    light = [calculate_psnr(add_synthetic_rain(clean, rng, RainParams.sample(rng, heavy=False))[0], clean)
             for _ in range(6)]
    # Rain100H rainy inputs score about 12 dB against their clean images.
    assert 7.0 < np.median(heavy) < 16.0
    assert np.median(light) > np.median(heavy) + 3.0


def test_streak_kernel_points_along_its_angle():
    vertical = streak_kernel(0.0, 21, 1.0, 0.0)
    centre = vertical.shape[0] // 2
    assert vertical[:, centre].sum() > 5 * vertical[centre, :].sum()
    assert vertical.max() == pytest.approx(1.0)


def test_bad_params_and_bad_images_are_refused():
    with pytest.raises(TreefuseError, match="density"):
        RainParams(density=2.0)
    with pytest.raises(TreefuseError, match="HxWx3"):
        add_synthetic_rain(np.zeros((8, 8), np.float32), np.random.default_rng(0))
