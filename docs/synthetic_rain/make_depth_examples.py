"""Docs examples: the self-drawn street of make_street_examples.py, its estimated depth, the depth-aware
`street` preset (seed 23, draws 0-2) and the judge renderer (seed 2023, draw 0)."""
import runpy

import numpy as np

from treefuse.data.depth_rain import DepthRainParams, render_depth_rain
from treefuse.data.judge_rain import JudgeRainParams, render_judge_rain
from treefuse.data.scene_depth import estimate_depth
from treefuse.data.street_rain import load_preset
from treefuse.images import write_image

img = runpy.run_path("docs/synthetic_rain/make_street_examples.py")["img"]
scene = estimate_depth(img)
preset = load_preset("street")
draws = [render_depth_rain(img, scene, DepthRainParams.sample(np.random.default_rng([23, i]), preset, scene.sky_rgb))[0]
         for i in range(3)]
judge = render_judge_rain(img, JudgeRainParams.sample(np.random.default_rng([2023, 0])))[0]
panels = [img, np.repeat(scene.depth[:, :, None], 3, 2), *draws, judge]
write_image("docs/synthetic_rain/street_depth_preset_judge.png", np.concatenate(panels, 1))
