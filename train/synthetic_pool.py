"""A pool of synthetic rain pairs rendered once, then sampled like real pairs.

Rendering rain costs ~4 ms per patch on the CPU, which a GPU step (~10 ms) cannot hide.
With a pool, rain is drawn once per pool image at start-up; training then only cuts
patches, which `device_patches.py` can do on the GPU. Each pool image is a pure function
of (seed, its index), so a pool re-renders identically on resume and on every DDP rank.
"""
from __future__ import annotations

import numpy as np

from treefuse.data.street_rain import RainPreset
from treefuse.train.datasets import ImagePair
from treefuse.train.patches import rain_on_crop

# Keeps pool random streams apart from the per-step batch streams ([seed, step] / [seed, step, rank]).
POOL_STREAM = 0x9001_5EED


def render_pool(photos: list[np.ndarray], count: int, crop_size: int, heavy_fraction: float, seed: int,
                progress: bool = True, street_fraction: float = 0.0,
                street_preset: RainPreset | None = None) -> tuple[ImagePair, ...]:
    """`count` crops of up to crop_size x crop_size from `photos` with synthetic rain, as uint8 pairs."""
    from treefuse.progress import progress_bar

    pool = []
    for index in progress_bar(range(count), progress, desc="rendering synthetic rain pool", unit="img", leave=False):
        rng = np.random.default_rng([seed, POOL_STREAM, index])
        photo = photos[int(rng.integers(len(photos)))]
        size = min(crop_size, *photo.shape[:2])
        rainy, clean = rain_on_crop(photo, rng, size, heavy_fraction, street_fraction, street_preset)
        pool.append(ImagePair(f"pool-{index}", _uint8(rainy), _uint8(clean)))
    return tuple(pool)


def _uint8(image: np.ndarray) -> np.ndarray:
    return np.round(image * 255.0).astype(np.uint8)
