"""Street rain in training: the held-out photos stay out, batches stay a pure function of the step."""
import numpy as np
import pytest

from treefuse.errors import TreefuseError
from treefuse.data.street_rain import load_preset
from treefuse.train.datasets import clean_photo_files
from treefuse.train.patches import PatchSampler
from treefuse.train.street_holdout import HELD_OUT, SELECTION
from treefuse.train.train_config import load_train_config
from treefuse.images import write_image


def test_street_config_holds_out_exactly_the_validation_photos():
    config = load_train_config("street")
    assert sorted(config.data.synthetic_exclude) == sorted(f"Urban100/{name}" for name in HELD_OUT)
    assert config.data.street_fraction > 0 and config.data.synthetic_fraction <= 0.5  # real pairs keep their share
    assert config.speed.precision == "fp32" and config.optim.init_weights
    assert not set(SELECTION) & set(HELD_OUT) and len(set(SELECTION)) == 8  # choosing never looks at the held-out set


def test_excluded_photos_are_left_out_and_a_misspelt_one_is_refused(tmp_path):
    for name in ("a.png", "sub/b.png", "sub/c.png"):
        write_image(tmp_path / name, np.zeros((4, 4, 3), np.float32))
    kept = clean_photo_files(tmp_path, ("sub/b.png",))
    assert [p.relative_to(tmp_path).as_posix() for p in kept] == ["a.png", "sub/c.png"]
    with pytest.raises(TreefuseError, match="sub/x.png"):
        clean_photo_files(tmp_path, ("sub/x.png",))


def _sampler(street_fraction, preset):
    photo = (np.random.default_rng(0).random((120, 120, 3)) * 255).astype(np.uint8)
    return PatchSampler([], [photo], 32, 4, 1.0, 0.5, True, 3, street_fraction=street_fraction, street_preset=preset)


def test_street_batches_are_a_pure_function_of_the_step_and_differ_from_plain_rain():
    preset = load_preset("street-flat")
    street = _sampler(1.0, preset)
    first, again = street.batch(5), street.batch(5)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not np.array_equal(first[0], street.batch(6)[0])
    plain = _sampler(0.0, preset)
    assert not np.array_equal(first[0], plain.batch(5)[0])
    # Without street rain the preset is never consulted: old runs keep their exact batches.
    assert all(np.array_equal(a, b) for a, b in zip(plain.batch(5), _sampler(0.0, None).batch(5)))


def test_depth_config_holds_out_the_street_selection_and_judge_frames():
    from treefuse.data.street_split import HELD_OUT as STREET_HELD_OUT

    config = load_train_config("street-depth")
    assert sorted(config.data.street_exclude) == sorted(STREET_HELD_OUT)
    assert sorted(config.data.synthetic_exclude) == sorted(f"Urban100/{name}" for name in HELD_OUT)
    assert load_preset(config.data.rain_preset).renderer == "depth"  # never the judge's renderer
    assert config.data.synthetic_fraction <= 0.5 and config.speed.threads == 1


def test_depth_street_batches_are_a_pure_function_of_the_step_and_need_every_depth():
    from treefuse.data.scene_depth import estimate_depth

    rng = np.random.default_rng(0)
    photo, frame = ((rng.random((120, 120, 3)) * 255).astype(np.uint8) for _ in range(2))
    preset = load_preset("street")
    make = lambda **extra: PatchSampler([], [photo], 32, 4, 1.0, 0.5, True, 3, street_fraction=0.8,
                                        street_preset=preset, **extra)
    sampler = make(scenes=(estimate_depth(photo),), street_photos=(frame,), street_scenes=(estimate_depth(frame),),
                   street_frame_fraction=0.5)
    first = sampler.batch(5)
    assert all(np.array_equal(a, b) for a, b in zip(first, sampler.batch(5)))
    assert not np.array_equal(first[0], sampler.batch(6)[0])
    with pytest.raises(TreefuseError, match="depth"):
        [make().batch(step) for step in range(5)]


def test_a_street_dir_needs_a_depth_preset_and_live_rain():
    with pytest.raises(TreefuseError, match="synthetic_pool"):
        load_train_config("street-depth", ["data.synthetic_pool=100"])
