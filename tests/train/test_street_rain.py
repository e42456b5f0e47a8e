"""Street rain: seeded, recorded, in range, each effect does what it says, presets checked."""
import numpy as np
import pytest
import yaml

from treefuse.errors import TreefuseError
from treefuse.metrics import calculate_psnr
from treefuse.data.street_rain import (BOUNDS, PRESET_DIR, StreetRainParams, depth_stand_in, load_preset,
                                  preset_from_dict, render_street_rain)
from treefuse.data.synthetic_rain import RainParams


def _photo(size=64, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0.1, 0.6, size, dtype=np.float32)[:, None, None]
    return np.clip(base + 0.05 * rng.standard_normal((size, size, 3)).astype(np.float32), 0, 1)


def _plain(**changes):
    """No streaks, no veil: only the effect under test."""
    fields = dict(streaks=(RainParams(density=0.0),), veil_beta=0.0, spray=0.0)
    return StreetRainParams(**{**fields, **changes})


def test_same_seed_same_pair_other_seed_other_pair_and_params_round_trip():
    preset, photo = load_preset("street-flat"), _photo()
    draw = lambda seed: StreetRainParams.sample(np.random.default_rng(seed), preset)
    first, again, other = draw(3), draw(3), draw(4)
    assert first == again and first != other
    assert StreetRainParams.from_dict(first.to_dict()) == first
    a, b = render_street_rain(photo, first), render_street_rain(photo, again)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], render_street_rain(photo, other)[0])


def test_samples_stay_inside_the_preset_ranges():
    preset = load_preset("street-flat")
    rng = np.random.default_rng(0)
    draws = [StreetRainParams.sample(rng, preset) for _ in range(200)]
    for key in ("veil_beta", "horizon", "near_depth", "tilt", "drop_blur_px", "spray"):
        low, high = preset.ranges[key]
        assert all(low <= getattr(d, key) <= high for d in draws), key
    low, high = preset.ranges["layers"]
    assert {len(d.streaks) for d in draws} <= set(range(int(low), int(high) + 1))
    nights = [d for d in draws if d.night]
    assert 0.15 < len(nights) / len(draws) < 0.45  # preset says 0.3
    assert all(preset.ranges["night_gain"][0] <= d.night_gain <= preset.ranges["night_gain"][1] for d in nights)
    assert all(d.noise_sigma == 0.0 and d.night_gain == 1.0 for d in draws if not d.night)


def test_output_in_range_and_heavy_enough():
    preset, photo = load_preset("street-flat"), _photo(96)
    rng = np.random.default_rng(1)
    psnrs = []
    for _ in range(6):
        rainy, clean = render_street_rain(photo, StreetRainParams.sample(rng, preset))
        assert rainy.dtype == np.float32 and rainy.shape == photo.shape
        assert 0.0 <= rainy.min() and rainy.max() <= 1.0 and 0.0 <= clean.min() and clean.max() <= 1.0
        psnrs.append(calculate_psnr(rainy, clean))
    assert 6.0 < np.median(psnrs) < 22.0  # heavy street rain, not a no-op


def test_veil_grows_with_depth_far_rows_are_washed_out_more():
    dark = np.full((80, 40, 3), 0.1, np.float32)
    rainy, _ = render_street_rain(dark, _plain(veil_beta=1.5, airlight=0.9, horizon=0.3, near_depth=0.05))
    top, bottom = rainy[:10].mean(), rainy[-10:].mean()
    assert top > bottom + 0.2  # far (above the horizon) is nearer to the airlight
    flat, _ = render_street_rain(dark, _plain(veil_beta=0.0))
    assert np.allclose(flat, dark, atol=1e-6)


def test_depth_stand_in_is_smooth_monotone_and_follows_the_crop():
    params = _plain(horizon=0.4, near_depth=0.1)
    depth = depth_stand_in(100, 20, params)
    assert depth[0].min() == pytest.approx(1.0) and depth[-1].max() < 0.2
    assert (np.diff(depth[:, 10]) <= 1e-6).all() and np.abs(np.diff(depth[:, 10])).max() < 0.05
    crop = depth_stand_in(25, 20, params, frame=(75, 0, 100, 20))
    assert np.allclose(crop, depth[75:], atol=1e-6)


def test_night_darkens_the_target_too_and_adds_noise_only_to_the_rainy_frame():
    photo = _photo()
    params = _plain(night=True, night_gain=0.3, noise_sigma=0.02, airlight=0.2)
    rainy, target = render_street_rain(photo, params)
    assert target.mean() < 0.4 * photo.mean()
    assert np.abs(rainy - target).std() > 0.01
    day_rainy, day_target = render_street_rain(photo, _plain())
    assert np.array_equal(day_target, photo) and np.allclose(day_rainy, photo, atol=1e-6)


def test_drop_blur_and_spray_change_the_frame():
    photo = _photo(seed=2)
    blurred, _ = render_street_rain(photo, _plain(drop_blur_px=1.5))
    assert np.abs(np.diff(blurred, axis=1)).mean() < 0.7 * np.abs(np.diff(photo, axis=1)).mean()
    dark = np.full((128, 128, 3), 0.1, np.float32)
    sprayed, _ = render_street_rain(dark, _plain(spray=0.6, airlight=0.9, horizon=0.5))
    assert sprayed[64:].mean() > dark[64:].mean() + 0.04  # blotches of mist below the horizon
    assert np.allclose(sprayed[:60], dark[:60], atol=1e-6)  # none in the far distance


def test_every_shipped_preset_loads_and_names_every_bound():
    from treefuse.data import depth_rain

    for path in PRESET_DIR.glob("*.yaml"):
        preset = load_preset(path)
        bounds = depth_rain.BOUNDS if getattr(preset, "renderer", "flat") == "depth" else BOUNDS
        assert set(preset.ranges) == set(bounds)


@pytest.mark.parametrize("change, message", [
    ({"spray": [0.5, 0.1]}, "spray"), ({"spray": [0.0, 2.0]}, "spray"), ({"spray": 0.3}, "spray"),
    ({"wind": [0, 1]}, "unknown"), ({"night_probability": 1.5}, "night_probability")])
def test_bad_presets_are_one_line_errors(change, message):
    data = yaml.safe_load((PRESET_DIR / "street-flat.yaml").read_text())
    data.update(change)
    with pytest.raises(TreefuseError, match=message) as info:
        preset_from_dict(data)
    assert "\n" not in str(info.value)


def test_missing_preset_names_the_shipped_ones():
    with pytest.raises(TreefuseError, match="street"):
        load_preset("no-such-preset")


def test_out_of_range_params_are_refused():
    with pytest.raises(TreefuseError, match="veil_beta"):
        StreetRainParams(veil_beta=-1.0)
