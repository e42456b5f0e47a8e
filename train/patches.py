"""Random training patches from pairs held in memory, with flips and synthetic rain.

A batch is a pure function of (seed, step): resuming at any step replays the same data
order without storing a sampler state.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.synthetic_rain import RainParams, add_synthetic_rain
from treefuse.train.datasets import ImagePair

# Rain is drawn on a larger crop so streaks enter the patch from outside its edges.
RAIN_MARGIN = 24


@dataclass(frozen=True)
class PatchSampler:
    """Cuts batches of (rainy, clean) patches: real pairs and clean photos given synthetic rain."""

    pairs: list[ImagePair]
    photos: list[np.ndarray]
    patch_size: int
    batch_size: int
    synthetic_fraction: float
    heavy_fraction: float
    flips: bool
    seed: int

    def __post_init__(self) -> None:
        for pair in self.pairs:
            if min(pair.rain.shape[:2]) < self.patch_size:
                raise TreefuseError(f"pair {pair.key} is smaller than a {self.patch_size}x{self.patch_size} patch; "
                                    "lower data.patch_size")
        if not self.pairs and self.synthetic_fraction < 1.0:
            raise TreefuseError("no real training pairs were loaded; set data.synthetic_fraction=1.0")
        if not self.photos and self.synthetic_fraction > 0.0:
            raise TreefuseError("no clean photos were loaded; set data.synthetic_fraction=0.0")

    def batch(self, step: int, rank: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The batch for `step` (and data-parallel `rank`) as Nx3xPxP float32 arrays in [0, 1]: rainy, clean."""
        rng = np.random.default_rng([self.seed, step] if rank is None else [self.seed, step, rank])
        rainy, clean = zip(*(self._sample(rng) for _ in range(self.batch_size)))
        return np.stack(rainy), np.stack(clean)

    def _sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        if rng.random() < self.synthetic_fraction:
            rainy, clean = self._synthetic(rng)
        else:
            pair = self.pairs[int(rng.integers(len(self.pairs)))]
            top, left = _corner(rng, pair.rain.shape, self.patch_size)
            window = (slice(top, top + self.patch_size), slice(left, left + self.patch_size))
            rainy, clean = _float(pair.rain[window]), _float(pair.clean[window])
        if self.flips:
            if rng.random() < 0.5:
                rainy, clean = rainy[:, ::-1], clean[:, ::-1]
            if rng.random() < 0.5:
                rainy, clean = rainy[::-1], clean[::-1]
        return _chw(rainy), _chw(clean)

    def _synthetic(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        photo = self.photos[int(rng.integers(len(self.photos)))]
        size = min(self.patch_size + 2 * RAIN_MARGIN, *photo.shape[:2])
        top, left = _corner(rng, photo.shape, size)
        crop = _float(photo[top:top + size, left:left + size])
        params = RainParams.sample(rng, heavy=bool(rng.random() < self.heavy_fraction))
        rainy, _ = add_synthetic_rain(crop, rng, params)
        rainy = np.round(rainy * 255.0) / 255.0  # quantized like the 8-bit real pairs
        inner = (size - self.patch_size) // 2
        window = (slice(inner, inner + self.patch_size), slice(inner, inner + self.patch_size))
        return rainy[window], crop[window]


def _corner(rng: np.random.Generator, shape: tuple[int, ...], size: int) -> tuple[int, int]:
    return int(rng.integers(shape[0] - size + 1)), int(rng.integers(shape[1] - size + 1))


def _float(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) / 255.0


def _chw(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1))
