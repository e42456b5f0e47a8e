"""The particle judge renderer: seeded, recorded, physically sane, and strict about its parameters."""
import dataclasses
import json

import numpy as np
import pytest

from treefuse.data.particle_rain import (RANGES, Camera, ParticleRainParams, drop_radiance, particle_folder,
                                         render_particle_rain, streak_footprint)
from treefuse.errors import TreefuseError
from treefuse.images import read_image, write_image


def _frame(seed=0):
    return np.random.default_rng(seed).random((72, 96, 3)).astype(np.float32) * 0.6


def _params(**changes):
    """A fixed mid-range rendering, with `changes`."""
    base = {key: (low + high) / 2 for key, (low, high) in RANGES.items()}
    return ParticleRainParams(**{**base, "seed": 5, **changes})


def test_same_seed_same_rendering_other_seed_other_and_params_round_trip():
    draw = lambda seed: ParticleRainParams.sample(np.random.default_rng(seed))
    first, again, other = draw(1), draw(1), draw(2)
    assert first == again and first != other
    assert ParticleRainParams.from_dict(json.loads(json.dumps(first.to_dict()))) == first
    frame = _frame()
    rainy = render_particle_rain(frame, first)[0]
    assert rainy.tobytes() == render_particle_rain(frame, again)[0].tobytes()
    assert not np.array_equal(rainy, render_particle_rain(frame, other)[0])
    assert not np.array_equal(rainy, render_particle_rain(frame, dataclasses.replace(first, seed=first.seed + 1))[0])


def test_draws_stay_in_their_ranges():
    rng = np.random.default_rng(0)
    for params in (ParticleRainParams.sample(rng) for _ in range(200)):
        for key, (low, high) in RANGES.items():
            assert low <= getattr(params, key) <= high, key


def test_folder_is_reproducible_and_every_pair_re_renders_from_its_record(tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        write_image(tmp_path / "frames" / f"{name}.png", _frame(seed))
    particle_folder(tmp_path / "frames", tmp_path / "p1", seed=9)
    particle_folder(tmp_path / "frames", tmp_path / "p2", seed=9)
    particle_folder(tmp_path / "frames", tmp_path / "p3", seed=10)
    record = json.loads((tmp_path / "p1" / "synth.json").read_text())
    assert record["renderer"] == "particle-garg-nayar" and record["seed"] == 9 and len(record["pairs"]) == 2
    assert set(record["ranges"]) == set(RANGES) and "near_m" in record["constants"]
    for pair in record["pairs"]:
        rain = lambda folder: (tmp_path / folder / "rain" / pair["name"]).read_bytes()
        assert rain("p1") == rain("p2") and rain("p1") != rain("p3")
        assert set(pair["params"]) == {"renderer", *(f.name for f in dataclasses.fields(ParticleRainParams))}
        assert "horizon" in pair["depth"]
        rainy, _ = render_particle_rain(read_image(tmp_path / "frames" / pair["source"]),
                                        ParticleRainParams.from_dict(pair["params"]))
        assert np.abs(rainy - read_image(tmp_path / "p1" / "rain" / pair["name"])).max() <= 0.5 / 255 + 1e-6


def test_a_streak_mixes_towards_the_drop_radiance_not_towards_white():
    calm = dict(beta_per_m=0.0, noise_sigma=0.0, rain_mm_h=150.0, exposure_ms=3.0)
    dark = np.full((72, 96, 3), 0.05, np.float32)  # E (sky light gathered by the drop) > B: streaks brighten
    rainy, clean = render_particle_rain(dark, _params(**calm))
    assert (rainy >= clean - 1e-6).all() and (rainy - clean).max() > 0.05
    bright = np.full((72, 96, 3), 0.95, np.float32)  # a dim drop (E < B) darkens the pixels it crosses
    params = _params(**calm, drop_gain=0.5, sky_radiance=0.5)
    assert (drop_radiance(bright, np.ones(3, np.float32), params) < 0.95).all()
    rainy, clean = render_particle_rain(bright, params)
    assert (rainy <= clean + 1e-6).all() and (clean - rainy).max() > 0.05


def test_more_fog_lowers_contrast_far_away_more_than_near():
    frame = _frame(3)
    frame[:36] *= 0.5  # no sky-like top: the depth estimate is a ground plane, far at the top rows
    contrast = lambda image, rows: float(image[rows].std())
    light, thick = (render_particle_rain(frame, _params(beta_per_m=b, rain_mm_h=0.1, noise_sigma=0.0))[0]
                    for b in (0.005, 0.1))
    far, near = slice(0, 8), slice(64, 72)
    assert contrast(thick, far) < contrast(light, far)
    assert contrast(thick, far) / contrast(light, far) < contrast(thick, near) / contrast(light, near)


def test_near_drops_make_longer_wider_streaks_and_defocus_grows_off_the_focus_plane():
    camera = Camera.of(360, 640, _params(focus_m=10.0))
    near, far = streak_footprint(0.5, 2.0, camera, 10.0), streak_footprint(8.0, 2.0, camera, 10.0)
    assert near[0] > far[0] and near[1] > far[1]
    at_focus, off_focus = streak_footprint(10.0, 2.0, camera, 0.0), streak_footprint(40.0, 2.0, camera, 0.0)
    assert off_focus[1] > camera.focal_px * 0.002 / 40  # blur adds to the drop's own size
    assert at_focus[1] == pytest.approx(camera.focal_px * 0.002 / 10)
    assert streak_footprint(2.0, 4.0, camera, 0.0)[0] > streak_footprint(2.0, 1.0, camera, 0.0)[0]  # big drops fall faster


@pytest.mark.parametrize("changes", [dict(beta_per_m=-0.1), dict(rain_mm_h=0.0), dict(exposure_ms=float("nan")),
                                     dict(hfov_deg=170.0), dict(seed=-1), dict(noise_sigma="0.01")])
def test_bad_params_are_refused_in_one_line(changes):
    with pytest.raises(TreefuseError) as error:
        _params(**changes)
    assert "\n" not in str(error.value) and next(iter(changes)) in str(error.value)


def test_a_bad_record_is_refused_in_one_line():
    record = _params().to_dict()
    for broken in ({k: v for k, v in record.items() if k != "wind_deg"}, {**record, "extra": 1},
                   {**record, "renderer": "judge-jorder-accumulation"}):
        with pytest.raises(TreefuseError) as error:
            ParticleRainParams.from_dict(broken)
        assert "\n" not in str(error.value)
    with pytest.raises(TreefuseError, match="HxWx3"):
        render_particle_rain(np.zeros((8, 8), np.float32), _params())


def test_the_street_judge_set_is_named_after_the_particle_renderer():
    from treefuse.train.street_holdout import STREET_RENDERERS, street_set_name

    assert "particle" in STREET_RENDERERS
    assert street_set_name("judge", "particle", 2023) == "street-judge14:particle-seed2023-640"
