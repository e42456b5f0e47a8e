"""Docs examples: a self-drawn street scene (no dataset photo) with street rain at fixed seeds."""
import numpy as np
from treefuse.images import write_image
from treefuse.data.street_rain import StreetRainParams, load_preset, render_street_rain
import dataclasses

H, W = 192, 256
y, x = np.mgrid[0:H, 0:W].astype(np.float32)
img = np.zeros((H, W, 3), np.float32)
horizon = 0.45 * H
sky = np.stack([0.55 + 0.2 * y / horizon, 0.7 + 0.1 * y / horizon, 0.9 + 0 * y], -1)
img[:] = sky
rng = np.random.default_rng(1)
# buildings on both sides, receding
for side in (0, 1):
    for i in range(7):
        x0 = i * 18 if side == 0 else W - (i + 1) * 18
        top = horizon - (90 - i * 10)
        colour = rng.uniform(0.25, 0.75, 3)
        img[int(top):int(horizon + 10 + (7 - i) * 4), max(0, x0):x0 + 18] = colour
        for wy in range(int(top) + 6, int(horizon), 10):  # windows
            img[wy:wy + 4, max(0, x0 + 4):x0 + 8] = 0.95 if (wy // 10 + i) % 3 else 0.15
            img[wy:wy + 4, max(0, x0 + 11):x0 + 15] = 0.15
# road: a trapezoid with lane marks
ground = y > horizon
img[ground] = [0.3, 0.3, 0.32]
road = ground & (np.abs(x - W / 2) < (y - horizon) / (H - horizon) * W * 0.55 + 4)
img[road] = [0.18, 0.18, 0.2]
lane = road & (np.abs(x - W / 2) < 1 + 2.5 * (y - horizon) / (H - horizon)) & ((y // 8) % 2 == 0)
img[lane] = [0.95, 0.9, 0.6]
# a car
img[150:175, 95:150] = [0.7, 0.1, 0.1]
img[140:152, 105:140] = [0.2, 0.25, 0.3]
img = np.clip(img, 0, 1)

preset = load_preset("street-flat")
base = StreetRainParams.sample(np.random.default_rng(11), preset)
day = dataclasses.replace(base, night=False, night_gain=1.0, night_streak_gain=1.0, noise_sigma=0.0, airlight=0.85,
                          veil_beta=0.7, spray=0.1, horizon=0.45)
heavy = dataclasses.replace(day, veil_beta=1.6, spray=0.35, drop_blur_px=1.0, airlight=0.9)
night = dataclasses.replace(day, night=True, night_gain=0.35, night_streak_gain=0.6, noise_sigma=0.012, airlight=0.2,
                            veil_beta=1.0)
panels = [img] + [render_street_rain(img, p)[0] for p in (day, heavy, night)]
write_image("docs/synthetic_rain/street_clean_day_heavy_night.png", np.concatenate(panels, 1))
samples = [render_street_rain(img, StreetRainParams.sample(np.random.default_rng([14, i]), preset))[0] for i in range(4)]
write_image("docs/synthetic_rain/street_preset_seed14_0-3.png", np.concatenate(samples, 1))
