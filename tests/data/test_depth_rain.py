"""Depth-aware street rain: depth that makes sense on a road, seeded renderings, complete manifests, bounds."""
import json

import numpy as np
import pytest
import yaml

from treefuse.data.depth_rain import (BOUNDS, DepthLayer, DepthRainParams, depth_preset_from_dict,
                                      render_depth_rain)
from treefuse.data.scene_depth import estimate_depth
from treefuse.data.street_rain import PRESET_DIR, load_preset
from treefuse.data.synth_pairs import synth_folder
from treefuse.data.synthetic_rain import RainParams
from treefuse.errors import TreefuseError
from treefuse.images import read_image, write_image


def road(height=120, width=200, seed=0):
    """A synthetic road frame: smooth blue sky above 40% of the height, textured grey road below."""
    rng = np.random.default_rng(seed)
    frame = np.empty((height, width, 3), np.float32)
    horizon = int(0.4 * height)
    frame[:horizon] = np.array([0.45, 0.65, 0.95], np.float32)
    frame[horizon:] = 0.35 + 0.08 * rng.standard_normal((height - horizon, width, 1)).astype(np.float32)
    return np.clip(frame, 0, 1)


def no_streaks(**changes):
    return DepthRainParams(**{"layers": (DepthLayer(0.5, RainParams(density=0.0)),), **changes})


def test_depth_of_a_road_is_far_at_the_sky_and_grows_monotonically_towards_the_horizon():
    frame = road()
    scene = estimate_depth(frame)
    assert scene.sky[:40].mean() > 0.95 and not scene.sky[60:].any()
    assert np.allclose(scene.depth[:35], 1.0, atol=1e-3)
    ground = scene.depth[50:]
    assert (np.diff(ground, axis=0) <= 1e-6).all()  # nearer (smaller) on every column going down
    assert ground[-1].max() < 0.15 and ground[0].min() > 0.5
    assert 0.3 <= scene.horizon <= 0.5
    assert scene.sky_rgb[2] > scene.sky_rgb[0]  # the veil colour comes from a blue sky


def test_a_frame_without_sky_recedes_to_its_top_row():
    scene = estimate_depth(np.full((60, 80, 3), 0.2, np.float32) + np.random.default_rng(1).random((60, 80, 3)) * 0.3)
    assert not scene.sky.any()
    assert (np.diff(scene.depth, axis=0) <= 1e-6).all() and scene.depth[0].min() > scene.depth[-1].max()


def test_the_veil_follows_depth_and_takes_the_airlight_colour():
    frame = np.zeros((120, 200, 3), np.float32) + road() * 0.2  # dark scene: the veil shows
    scene = estimate_depth(road())
    rainy, target = render_depth_rain(frame, scene, no_streaks(beta=2.0, airlight_rgb=(0.6, 0.7, 0.9)))
    assert np.array_equal(target, frame)
    lift = (rainy - frame).mean(axis=(1, 2))
    assert lift[5] > lift[70] > lift[-1]  # sky > middle of the road > bottom row
    assert rainy[5].mean(axis=0)[2] > rainy[5].mean(axis=0)[0]  # tinted like the airlight
    flat, _ = render_depth_rain(frame, scene, no_streaks(beta=0.0))
    assert np.allclose(flat, frame, atol=1e-6)


def test_near_streaks_do_not_show_in_front_of_nothing_far_layers_hide_behind_near_surfaces():
    scene = estimate_depth(road())
    far_layer = (DepthLayer(0.9, RainParams(density=0.02, intensity=1.0, length_px=9, seed=3)),)
    rainy, target = render_depth_rain(road(), scene, DepthRainParams(layers=far_layer, beta=0.0))
    change = np.abs(rainy - target).mean(axis=(1, 2))
    assert change[:30].mean() > 10 * change[-20:].mean()  # behind the near road, a far sheet is hidden


def test_same_seed_same_rendering_other_seed_other_rendering_and_params_round_trip():
    preset, frame = load_preset("street"), road()
    scene = estimate_depth(frame)
    draw = lambda seed: DepthRainParams.sample(np.random.default_rng(seed), preset, scene.sky_rgb)
    first, again, other = draw(5), draw(5), draw(6)
    assert first == again and first != other
    assert DepthRainParams.from_dict(json.loads(json.dumps(first.to_dict()))) == first
    a, b = render_depth_rain(frame, scene, first), render_depth_rain(frame, scene, again)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not np.array_equal(a[0], render_depth_rain(frame, scene, other)[0])


def test_drawn_parameters_stay_inside_the_preset_ranges():
    preset = load_preset("street")
    rng = np.random.default_rng(0)
    draws = [DepthRainParams.sample(rng, preset, (0.5, 0.6, 0.8)) for _ in range(300)]
    within = lambda key, value: preset.ranges[key][0] - 1e-9 <= value <= preset.ranges[key][1] + 1e-9
    for params in draws:
        assert within("beta", params.beta) and within("brightness", params.brightness)
        assert within("noise_sigma", params.noise_sigma)
        assert params.jpeg_quality == 0 or within("jpeg_quality", params.jpeg_quality)
        assert params.motion_blur_px == 0 or within("motion_blur_px", params.motion_blur_px)
        assert within("layers", len(params.layers))
        depths = [layer.depth for layer in params.layers]
        assert all(preset.ranges["near_layer_depth"][0] - 1e-9 <= d <= preset.ranges["far_layer_depth"][1] + 1e-9
                   for d in depths)
        for layer in params.layers:
            assert preset.ranges["length_px"][0] * 0.1 <= layer.streaks.length_px <= preset.ranges["length_px"][1]
            assert layer.streaks.width_px <= preset.ranges["width_px"][1]
        assert all(0.0 <= c <= 1.0 for c in params.airlight_rgb)
    # Every randomized knob actually varies.
    for values in ([p.beta for p in draws], [p.jpeg_quality for p in draws], [len(p.layers) for p in draws],
                   [p.motion_blur_px for p in draws], [p.airlight_rgb for p in draws], [p.brightness for p in draws]):
        assert len(set(values)) > 2
    # Nearer layers: longer streaks, sparser drops.
    multi = [p for p in draws if len(p.layers) >= 3]
    for params in multi:
        by_depth = sorted(params.layers, key=lambda layer: layer.depth)
        assert by_depth[0].streaks.length_px > by_depth[-1].streaks.length_px
        assert by_depth[0].streaks.density < by_depth[-1].streaks.density


def test_out_of_range_params_and_bad_presets_are_one_line_errors():
    with pytest.raises(TreefuseError, match="beta"):
        no_streaks(beta=-1.0)
    data = yaml.safe_load((PRESET_DIR / "street.yaml").read_text())
    assert set(BOUNDS) <= set(data)
    for change, message in (({"beta": [2.0, 1.0]}, "beta"), ({"jpeg_probability": 2}, "jpeg_probability"),
                            ({"nonsense": [0, 1]}, "unknown"), ({"near_layer_depth": [0.2, 0.5]}, "below")):
        with pytest.raises(TreefuseError, match=message) as info:
            depth_preset_from_dict({**data, **change})
        assert "\n" not in str(info.value)


def test_synth_manifest_records_every_parameter_and_reproduces_each_pair(tmp_path):
    frames = tmp_path / "frames"
    for name, seed in (("a", 0), ("b", 1)):
        write_image(frames / f"{name}.png", road(96, 160, seed))
    first = synth_folder(frames, tmp_path / "p1", preset="street", seed=4, count=3)
    synth_folder(frames, tmp_path / "p2", preset="street", seed=4, count=3)
    assert first["pairs"] == 3
    record = json.loads((tmp_path / "p1" / "synth.json").read_text())
    assert record["renderer"] == "depth" and record["preset"]["name"] == "street"
    for pair in record["pairs"]:
        for sub in ("rain", "clean"):
            assert (tmp_path / "p1" / sub / pair["name"]).read_bytes() == (tmp_path / "p2" / sub / pair["name"]).read_bytes()
        params = DepthRainParams.from_dict(pair["params"])
        expected = {"layers", "beta", "airlight_rgb", "motion_blur_px", "motion_angle_deg", "brightness",
                    "noise_sigma", "jpeg_quality", "seed", "renderer"}
        assert set(pair["params"]) == expected and {"horizon", "sky_rgb"} <= set(pair["depth"])
        source = read_image(frames / pair["source"])
        rainy, _ = render_depth_rain(source, estimate_depth(source), params)
        written = read_image(tmp_path / "p1" / "rain" / pair["name"])
        assert np.abs(np.round(rainy * 255) / 255 - written).max() < 1.5 / 255  # the record alone reproduces it
