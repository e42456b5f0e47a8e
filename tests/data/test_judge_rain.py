"""The judge renderer: seeded, recorded, independent of the training renderers, and never trained on."""
import ast
import json
from pathlib import Path

import numpy as np
import pytest

from treefuse.data.judge_rain import RANGES, JudgeRainParams, judge_folder, render_judge_rain
from treefuse.errors import TreefuseError
from treefuse.images import read_image, write_image

ROOT = Path(__file__).resolve().parents[2]


def _frame(seed=0):
    return np.random.default_rng(seed).random((72, 96, 3)).astype(np.float32) * 0.6


def test_same_seed_same_rendering_other_seed_other_and_params_round_trip():
    draw = lambda seed: JudgeRainParams.sample(np.random.default_rng(seed))
    first, again, other = draw(1), draw(1), draw(2)
    assert first == again and first != other
    assert JudgeRainParams.from_dict(json.loads(json.dumps(first.to_dict()))) == first
    frame = _frame()
    assert np.array_equal(render_judge_rain(frame, first)[0], render_judge_rain(frame, again)[0])
    assert not np.array_equal(render_judge_rain(frame, first)[0], render_judge_rain(frame, other)[0])


def test_draws_stay_in_range_and_the_model_is_additive_rain_under_accumulation():
    rng = np.random.default_rng(0)
    for params in (JudgeRainParams.sample(rng) for _ in range(100)):
        assert RANGES["horizon"][0] <= params.horizon <= RANGES["horizon"][1]
        assert params.alpha_far <= params.alpha_near and 1 <= len(params.layers) <= 3
    params = JudgeRainParams.sample(np.random.default_rng(3))
    black = np.zeros((72, 96, 3), np.float32)
    rainy, clean = render_judge_rain(black, params)
    assert np.array_equal(clean, black) and rainy.min() >= 0 and rainy.mean() > 0.05
    assert rainy[-1].mean() < rainy[0].mean()  # less accumulation near the camera (bottom rows)


def test_folder_is_reproducible_with_every_pair_recorded(tmp_path):
    for name, seed in (("a", 0), ("b", 1)):
        write_image(tmp_path / "frames" / f"{name}.png", _frame(seed))
    judge_folder(tmp_path / "frames", tmp_path / "j1", seed=9)
    judge_folder(tmp_path / "frames", tmp_path / "j2", seed=9)
    record = json.loads((tmp_path / "j1" / "synth.json").read_text())
    assert record["renderer"].startswith("judge") and len(record["pairs"]) == 2
    for pair in record["pairs"]:
        assert (tmp_path / "j1" / "rain" / pair["name"]).read_bytes() == (tmp_path / "j2" / "rain" / pair["name"]).read_bytes()
        params = JudgeRainParams.from_dict(pair["params"])
        rainy, _ = render_judge_rain(read_image(tmp_path / "frames" / pair["source"]), params)
        assert np.abs(rainy - read_image(tmp_path / "j1" / "rain" / pair["name"])).max() < 1.5 / 255


def _imports(path):
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    return names | {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}


JUDGE_MODULES = ("judge_rain", "particle_rain")


def test_every_judge_renderer_is_listed_as_judge_only():
    from treefuse.data import judge_rain, particle_rain
    from treefuse.train.session import JUDGE_ONLY_RENDERERS

    assert {judge_rain.RENDERER, particle_rain.RENDERER} == set(JUDGE_ONLY_RENDERERS)
    assert {Path(p).stem for p in JUDGE_ONLY_RENDERERS.values()} == set(JUDGE_MODULES)


def test_training_and_the_training_renderers_never_use_a_judge():
    for path in [*(ROOT / "train").rglob("*.py"), *(ROOT / "data").glob("*.py")]:
        if path.stem in JUDGE_MODULES or path.name == "street_holdout.py":  # street_holdout builds the judge sets
            continue
        assert not any(judge in name for name in _imports(path) for judge in JUDGE_MODULES), path
    for judge in JUDGE_MODULES:
        imported = _imports(ROOT / "data" / f"{judge}.py")
        others = ("depth_rain", "street_rain", "synthetic_rain", *(j for j in JUDGE_MODULES if j != judge))
        assert not any(m in name for name in imported for m in others), judge
    assert not any("scene_depth" in name for name in _imports(ROOT / "data" / "judge_rain.py"))


def test_a_training_config_on_judge_pairs_is_refused(tmp_path):
    from treefuse.data.particle_rain import particle_folder
    from treefuse.train.session import refuse_judge_pairs

    write_image(tmp_path / "frames" / "a.png", _frame())
    judge_folder(tmp_path / "frames", tmp_path / "judged", seed=1)
    particle_folder(tmp_path / "frames", tmp_path / "particles", seed=1)
    for folder, renderer in (("judged", "judge-jorder"), ("particles", "particle-garg-nayar")):
        with pytest.raises(TreefuseError, match=f"judge rain \\({renderer}"):
            refuse_judge_pairs([str(tmp_path / "frames"), str(tmp_path / folder)])
    refuse_judge_pairs([str(tmp_path / "frames")])
