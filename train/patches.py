"""Random training patches from pairs held in memory, with flips and synthetic rain.

A batch is a pure function of (seed, step): resuming at any step replays the same data
order without storing a sampler state. Without live rain rendering (all real pairs, or
synthetic rain taken from a pre-rendered pool) a batch is fully described by its draws
(`PatchDraw`), which `device_patches.py` cuts on the training device instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.data.depth_rain import DepthRainParams, DepthRainPreset, render_depth_rain
from treefuse.data.scene_depth import SceneDepth
from treefuse.data.street_rain import RainPreset, StreetRainParams, render_street_rain
from treefuse.data.synthetic_rain import RainParams, add_synthetic_rain
from treefuse.train.datasets import ImagePair

# Rain is drawn on a larger crop so streaks enter the patch from outside its edges.
RAIN_MARGIN = 24


@dataclass(frozen=True)
class PatchDraw:
    """Where one patch comes from: image `index` of `sampler.banks()`, its corner, its flips."""

    index: int
    top: int
    left: int
    hflip: bool
    vflip: bool


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
    pool: tuple[ImagePair, ...] = ()  # pre-rendered synthetic pairs; empty: render rain per patch
    street_fraction: float = 0.0  # share of synthetic patches given street rain (veil, spray, night)
    street_preset: "RainPreset | DepthRainPreset | None" = None  # the ranges street rain is drawn from
    scenes: tuple[SceneDepth, ...] = ()  # depth of each of `photos` (depth-aware presets only)
    street_photos: tuple[np.ndarray, ...] = ()  # road frames: street rain only
    street_scenes: tuple[SceneDepth, ...] = ()
    street_frame_fraction: float = 0.0  # share of street-rain patches drawn on `street_photos`

    def __post_init__(self) -> None:
        for pair in self.pairs:
            if min(pair.rain.shape[:2]) < self.patch_size:
                raise TreefuseError(f"pair {pair.key} is smaller than a {self.patch_size}x{self.patch_size} patch; "
                                    "lower data.patch_size")
        for pair in self.pool:
            if min(pair.rain.shape[:2]) < self.patch_size:
                raise TreefuseError(f"pool image {pair.key} is smaller than a {self.patch_size}x{self.patch_size} patch")
        if not self.pairs and self.synthetic_fraction < 1.0:
            raise TreefuseError("no real training pairs were loaded; set data.synthetic_fraction=1.0")
        if not self.photos and not self.pool and self.synthetic_fraction > 0.0:
            raise TreefuseError("no clean photos were loaded; set data.synthetic_fraction=0.0")

    @property
    def renders_live(self) -> bool:
        """Whether some patches get rain drawn at sampling time (no pool to take it from)."""
        return self.synthetic_fraction > 0.0 and not self.pool

    def banks(self) -> list[ImagePair]:
        """The images `PatchDraw.index` refers to: the real pairs, then the synthetic pool."""
        return [*self.pairs, *self.pool]

    def _image(self, index: int) -> ImagePair:
        """`banks()[index]` without building the list on every patch."""
        return self.pairs[index] if index < len(self.pairs) else self.pool[index - len(self.pairs)]

    def batch(self, step: int, rank: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The batch for `step` (and data-parallel `rank`) as Nx3xPxP float32 arrays in [0, 1]: rainy, clean."""
        rng = self._rng(step, rank)
        rainy, clean = zip(*(self._sample(rng) for _ in range(self.batch_size)))
        return np.stack(rainy), np.stack(clean)

    def draws(self, step: int, rank: int | None = None) -> list[PatchDraw]:
        """The batch for `step` as draws (what `batch` cuts); only without live rain rendering."""
        if self.renders_live:
            raise TreefuseError("patches with live synthetic rain cannot be planned ahead; "
                                "set data.synthetic_pool > 0 or data.synthetic_fraction=0")
        rng = self._rng(step, rank)
        return [self._draw(rng) for _ in range(self.batch_size)]

    def _rng(self, step: int, rank: int | None) -> np.random.Generator:
        return np.random.default_rng([self.seed, step] if rank is None else [self.seed, step, rank])

    def _draw(self, rng: np.random.Generator) -> PatchDraw:
        index = self._pick(rng)
        pair = self._image(index)
        top, left = _corner(rng, pair.rain.shape, self.patch_size)
        return PatchDraw(index, top, left, *self._flips(rng))

    def _pick(self, rng: np.random.Generator) -> int | None:
        """The bank index of the next patch's image; None means: render synthetic rain now."""
        if rng.random() < self.synthetic_fraction:
            return None if not self.pool else len(self.pairs) + int(rng.integers(len(self.pool)))
        return int(rng.integers(len(self.pairs)))

    def _flips(self, rng: np.random.Generator) -> tuple[bool, bool]:
        if not self.flips:
            return False, False
        return bool(rng.random() < 0.5), bool(rng.random() < 0.5)

    def _sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        index = self._pick(rng)
        if index is None:
            rainy, clean = self._synthetic(rng)
        else:
            pair = self._image(index)
            top, left = _corner(rng, pair.rain.shape, self.patch_size)
            window = (slice(top, top + self.patch_size), slice(left, left + self.patch_size))
            rainy, clean = _float(pair.rain[window]), _float(pair.clean[window])
        hflip, vflip = self._flips(rng)
        if hflip:
            rainy, clean = rainy[:, ::-1], clean[:, ::-1]
        if vflip:
            rainy, clean = rainy[::-1], clean[::-1]
        return _chw(rainy), _chw(clean)

    def _synthetic(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        # Only a run with road frames draws this number: older runs keep their exact batches.
        if self.street_photos and rng.random() < self.street_fraction * self.street_frame_fraction:
            index = int(rng.integers(len(self.street_photos)))
            return rain_on_crop(self.street_photos[index], rng, self.patch_size, self.heavy_fraction, 1.0,
                                self.street_preset, self.street_scenes[index])
        index = int(rng.integers(len(self.photos)))
        street_fraction = self.street_fraction
        if self.street_photos:
            # What is left of the street share after the road frames took theirs.
            street_fraction = self.street_fraction * (1.0 - self.street_frame_fraction) / (
                1.0 - self.street_fraction * self.street_frame_fraction)
        return rain_on_crop(self.photos[index], rng, self.patch_size, self.heavy_fraction, street_fraction,
                            self.street_preset, self.scenes[index] if self.scenes else None)


def rain_on_crop(photo: np.ndarray, rng: np.random.Generator, size: int, heavy_fraction: float,
                 street_fraction: float = 0.0, street_preset: "RainPreset | DepthRainPreset | None" = None,
                 scene: SceneDepth | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A random size x size crop of `photo` with synthetic rain, and the same crop clean; floats in [0, 1]."""
    outer = min(size + 2 * RAIN_MARGIN, *photo.shape[:2])
    top, left = _corner(rng, photo.shape, outer)
    crop = _float(photo[top:top + outer, left:left + outer])
    # Only a run with street rain draws this number: older runs keep their exact batches.
    if street_fraction > 0.0 and street_preset is not None and rng.random() < street_fraction:
        if isinstance(street_preset, DepthRainPreset):
            if scene is None:
                raise TreefuseError("a depth-aware rain preset needs the depth of every backdrop")
            # The crop keeps the depth (and sky colour) estimated on its whole frame.
            depth_params = DepthRainParams.sample(rng, street_preset, scene.sky_rgb)
            rainy, crop = render_depth_rain(crop, scene.crop(top, left, outer, outer), depth_params)
        else:
            params = StreetRainParams.sample(rng, street_preset)
            # The depth stand-in follows the crop's place in the whole photo (ground below, far above).
            rainy, crop = render_street_rain(crop, params, (top, left, *photo.shape[:2]))
    else:
        params = RainParams.sample(rng, heavy=bool(rng.random() < heavy_fraction))
        rainy, _ = add_synthetic_rain(crop, rng, params)
    rainy = np.round(rainy * 255.0) / 255.0  # quantized like the 8-bit real pairs
    inner = (outer - size) // 2
    window = (slice(inner, inner + size), slice(inner, inner + size))
    return rainy[window], crop[window]


def _corner(rng: np.random.Generator, shape: tuple[int, ...], size: int) -> tuple[int, int]:
    return int(rng.integers(shape[0] - size + 1)), int(rng.integers(shape[1] - size + 1))


def _float(pixels: np.ndarray) -> np.ndarray:
    return pixels.astype(np.float32) / 255.0


def _chw(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1))
