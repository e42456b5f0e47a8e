"""How long cutting one training batch takes, per data path, side by side in one process.

Data loading must never be the bottleneck: on the CPU a step takes ~300 ms; on a GPU the
paper-in-an-hour goal leaves ~12 ms per step for everything. Measured on random in-memory
images of Rain100H size, so the figure is the sampler's, not the disk's.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from treefuse.train.datasets import ImagePair
from treefuse.train.device_patches import DevicePatchSampler
from treefuse.train.patches import PatchSampler
from treefuse.train.synthetic_pool import render_pool
from treefuse.train.train_config import TrainConfig

POOL_SIZE = 64  # enough to time sampling; training pools are larger but cut the same way


def time_batch_paths(config: TrainConfig, device: torch.device, batches: int = 20) -> list[tuple[str, float]]:
    """(data path, ms per batch) for real pairs, live synthetic rain, a pool on the host, a pool on `device`."""
    data = config.data
    rng = np.random.default_rng(0)
    pairs = [ImagePair(str(i), *rng.integers(0, 256, (2, 321, 481, 3), dtype=np.uint8)) for i in range(8)]
    photos = [rng.integers(0, 256, (512, 768, 3), dtype=np.uint8) for _ in range(4)]
    pool = render_pool(photos, POOL_SIZE, 2 * data.patch_size, data.heavy_fraction, seed=0, progress=False)
    fraction = data.synthetic_fraction or 0.5

    def sampler(synthetic: float, with_pool: bool) -> PatchSampler:
        return PatchSampler(pairs, photos, data.patch_size, data.batch_size, synthetic, data.heavy_fraction,
                            data.flips, 0, pool if with_pool else ())

    pooled = sampler(fraction, True)
    on_device = DevicePatchSampler(pooled, device)
    paths: list[tuple[str, Callable[[int], object]]] = [
        ("host, real pairs only", sampler(0.0, False).batch),
        (f"host, {fraction:.0%} live synthetic rain", sampler(fraction, False).batch),
        (f"host, {fraction:.0%} from a rendered pool", pooled.batch),
        (f"{device.type}, {fraction:.0%} from a rendered pool", on_device.batch),
    ]
    return [(label, _ms_per_batch(cut, batches, device)) for label, cut in paths]


def _ms_per_batch(cut: Callable[[int], object], batches: int, device: torch.device) -> float:
    cut(0)
    _sync(device)
    start = time.perf_counter()
    for step in range(1, batches + 1):
        cut(step)
    _sync(device)
    return (time.perf_counter() - start) / batches * 1000.0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
