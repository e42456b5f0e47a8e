"""Seeded synthetic rain: turns any clean photo into a (rainy, clean) training pair.

Sparse drops are smeared into streaks by a line kernel (angle, length, width, blur),
screen-blended onto the photo over a few layers of slightly different angle, then an
optional haze veil is mixed in. Every rendering is a pure function of its RainParams
(which include the noise seed), so a recorded `to_dict()` reproduces it exactly.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from treefuse.errors import TreefuseError


@dataclass(frozen=True)
class RainParams:
    """Everything that decides one rendering of rain."""

    angle_deg: float = 10.0  # streak direction, degrees from vertical
    length_px: float = 25.0  # streak length
    width_px: float = 1.0  # streak thickness (Gaussian sigma across the streak, x2)
    density: float = 0.01  # fraction of pixels that seed a drop
    intensity: float = 0.6  # peak streak brightness in [0, 1]
    blur_px: float = 0.5  # extra defocus blur of the streak layer
    layers: int = 1  # streak layers, each at a slightly different angle and length
    angle_spread_deg: float = 4.0  # std of the per-layer angle change (crossing streaks)
    haze: float = 0.0  # veil strength in [0, 1): 0 means no haze
    haze_level: float = 0.85  # brightness of the veil
    seed: int = 0  # seed of the drop noise

    def __post_init__(self) -> None:
        checks = {
            "length_px": self.length_px >= 1, "width_px": self.width_px > 0, "density": 0 <= self.density <= 1,
            "intensity": 0 <= self.intensity <= 1, "blur_px": self.blur_px >= 0, "layers": self.layers >= 1, "angle_spread_deg": self.angle_spread_deg >= 0,
            "haze": 0 <= self.haze < 1, "haze_level": 0 <= self.haze_level <= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise TreefuseError(f"rain params out of range: {bad} in {self.to_dict()}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def sample(cls, rng: np.random.Generator, heavy: bool = False) -> "RainParams":
        """Draw random rain; `heavy` covers Rain100H-like downpours (rainy PSNR around 12 dB)."""
        if heavy:
            density, length, width = rng.uniform(0.0015, 0.005), rng.uniform(25, 60), rng.uniform(1.2, 2.6)
            intensity, layers, haze = rng.uniform(0.7, 1.0), int(rng.integers(2, 5)), rng.uniform(0.15, 0.4)
            spread = rng.uniform(4.0, 20.0)
        else:
            density, length, width = rng.uniform(0.0005, 0.003), rng.uniform(10, 45), rng.uniform(0.6, 1.8)
            intensity, layers = rng.uniform(0.3, 0.8), int(rng.integers(1, 3))
            haze = rng.uniform(0.0, 0.2) if rng.random() < 0.5 else 0.0
            spread = rng.uniform(0.0, 8.0)
        return cls(angle_deg=float(rng.uniform(-35, 35)), length_px=float(length), width_px=float(width),
                   density=float(density), intensity=float(intensity), blur_px=float(rng.uniform(0.0, 1.2)),
                   layers=layers, angle_spread_deg=float(spread), haze=float(haze), haze_level=float(rng.uniform(0.7, 0.95)),
                   seed=int(rng.integers(0, 2**31 - 1)))


def streak_kernel(angle_deg: float, length_px: float, width_px: float, blur_px: float) -> np.ndarray:
    """A line of the given length and angle with a Gaussian cross-section; peak value 1."""
    half = int(math.ceil(length_px / 2 + 2 * (width_px + blur_px) + 1))
    ys, xs = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    theta = math.radians(angle_deg)
    along = xs * math.sin(theta) + ys * math.cos(theta)
    across = xs * math.cos(theta) - ys * math.sin(theta)
    sigma = max(width_px / 2 + blur_px, 0.3)
    profile = np.exp(-0.5 * (across / sigma) ** 2)
    # Soft, tapered ends: streaks fade in and out instead of ending in a hard edge.
    taper = np.clip((length_px / 2 - np.abs(along)) / max(1.0, 0.25 * length_px) + 0.5, 0.0, 1.0)
    kernel = profile * taper
    return (kernel / kernel.max()).astype(np.float32)


def _convolve_same(field: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """2-D 'same' convolution by FFT (kernels are up to ~70 px wide)."""
    kh, kw = kernel.shape
    shape = (field.shape[0] + kh - 1, field.shape[1] + kw - 1)
    full = np.fft.irfft2(np.fft.rfft2(field, shape) * np.fft.rfft2(kernel, shape), shape)
    top, left = (kh - 1) // 2, (kw - 1) // 2
    return full[top:top + field.shape[0], left:left + field.shape[1]].astype(np.float32)


def streak_layer(height: int, width: int, params: RainParams) -> np.ndarray:
    """The HxW rain-streak opacity map in [0, 1] that `params` describe."""
    noise_rng = np.random.default_rng(params.seed)
    layer = np.zeros((height, width), dtype=np.float32)
    for _ in range(params.layers):
        drops = (noise_rng.random((height, width)) < params.density / params.layers).astype(np.float32)
        drops *= noise_rng.uniform(0.5, 1.0, size=(height, width)).astype(np.float32)
        angle = params.angle_deg + noise_rng.normal(0.0, params.angle_spread_deg)
        length = params.length_px * noise_rng.uniform(0.7, 1.15)
        kernel = streak_kernel(angle, length, params.width_px, params.blur_px)
        layer = np.maximum(layer, np.clip(_convolve_same(drops, kernel), 0.0, 1.0))
    return layer * params.intensity


def add_synthetic_rain(clean: np.ndarray, rng: np.random.Generator,
                       params: RainParams | None = None) -> tuple[np.ndarray, RainParams]:
    """Render rain onto an HxWx3 float32 image in [0, 1]; returns (rainy, params used)."""
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise TreefuseError(f"synthetic rain needs an HxWx3 image, got shape {clean.shape}")
    if params is None:
        params = RainParams.sample(rng, heavy=bool(rng.random() < 0.5))
    streaks = streak_layer(clean.shape[0], clean.shape[1], params)[:, :, None]
    # Screen blend: rain brightens, never darkens, and saturates at white.
    rainy = 1.0 - (1.0 - clean) * (1.0 - streaks)
    if params.haze > 0:
        rainy = rainy * (1.0 - params.haze) + params.haze * params.haze_level
    return np.clip(rainy, 0.0, 1.0).astype(np.float32), params
