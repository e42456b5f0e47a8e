"""A second, independent rain renderer, used only as a judge: never in training.

Photometric model: the rain-layer-with-accumulation model of Yang et al. (JORDER, CVPR 2017),
O = alpha * (B + sum_t S_t) + (1 - alpha) * A: streak layers S_t are *added* to the background
B (not screen- or alpha-blended), then the whole is mixed with a uniform atmospheric light A
(not the frame's sky colour) through a transmission alpha that is a row ramp below a random
horizon with patchy fog (no depth estimate of the frame). Streaks are made the Photoshop way
the Rain100H/L sets were: thresholded Gaussian noise at a drop scale, motion-blurred by a line
of some length and angle, softened. Nothing here comes from `depth_rain`, `scene_depth`,
`street_rain` or `synthetic_rain`, so a gain measured on this rain is not a gain on the
training renderer's own look. `train/` must never import this module (a test checks).
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.errors import TreefuseError

RENDERER = "judge-jorder-accumulation"
# Ranges drawn by JudgeRainParams.sample; fixed here, so the judge cannot be tuned to a model.
RANGES: dict[str, tuple[float, float]] = {
    "horizon": (0.3, 0.55), "alpha_far": (0.35, 0.75), "alpha_near": (0.8, 1.0), "fog_patchiness": (0.0, 0.3),
    "atmosphere": (0.7, 1.0), "angle_deg": (-25.0, 25.0), "drop_quantile": (0.955, 0.99),
    "length_px": (12.0, 55.0), "gain": (0.25, 0.75), "soften_px": (0.4, 1.4),
}
LAYERS = (1, 3)
DROP_SCALES = (1, 2, 3)  # a layer's drops are drawn on a grid this many times coarser (bigger, nearer drops)


@dataclass(frozen=True)
class JudgeLayer:
    """One additive streak layer S_t."""

    scale: int
    drop_quantile: float  # drops are the noise above this quantile: higher, sparser
    length_px: float
    angle_deg: float
    gain: float
    soften_px: float
    seed: int


@dataclass(frozen=True)
class JudgeRainParams:
    """Everything that decides one judge rendering."""

    layers: tuple[JudgeLayer, ...]
    horizon: float
    alpha_far: float
    alpha_near: float
    fog_patchiness: float
    atmosphere_rgb: tuple[float, float, float]
    seed: int

    def __post_init__(self) -> None:
        if not self.layers or not 0 < self.alpha_far <= self.alpha_near <= 1:
            raise TreefuseError(f"judge rain params out of range: {self.to_dict()}")

    def to_dict(self) -> dict[str, Any]:
        return {"renderer": RENDERER, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "JudgeRainParams":
        data = {k: v for k, v in data.items() if k != "renderer"}
        data["layers"] = tuple(JudgeLayer(**layer) for layer in data["layers"])
        data["atmosphere_rgb"] = tuple(data["atmosphere_rgb"])
        return cls(**data)

    @classmethod
    def sample(cls, rng: np.random.Generator) -> "JudgeRainParams":
        """Draw one judge rendering from RANGES."""
        draw = lambda key: float(rng.uniform(*RANGES[key]))
        wind = draw("angle_deg")
        count = int(rng.integers(LAYERS[0], LAYERS[1] + 1))
        layers = tuple(JudgeLayer(scale=int(rng.choice(DROP_SCALES)), drop_quantile=draw("drop_quantile"),
                                  length_px=draw("length_px"), angle_deg=float(wind + rng.uniform(-5, 5)),
                                  gain=draw("gain"), soften_px=draw("soften_px"), seed=int(rng.integers(2**31 - 1)))
                       for _ in range(count))
        atmosphere = draw("atmosphere") + rng.uniform(-0.03, 0.03, 3)
        return cls(layers=layers, horizon=draw("horizon"), alpha_far=draw("alpha_far"), alpha_near=draw("alpha_near"),
                   fog_patchiness=draw("fog_patchiness"),
                   atmosphere_rgb=tuple(float(c) for c in np.clip(atmosphere, 0, 1)), seed=int(rng.integers(2**31 - 1)))


def render_judge_rain(clean: np.ndarray, params: JudgeRainParams) -> tuple[np.ndarray, np.ndarray]:
    """(rainy, clean) for an HxWx3 float image in [0, 1]: O = alpha (B + sum S) + (1 - alpha) A."""
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise TreefuseError(f"judge rain needs an HxWx3 image, got shape {clean.shape}")
    height, width = clean.shape[:2]
    background = clean.astype(np.float32)
    rain = np.zeros((height, width), np.float32)
    for layer in params.layers:
        rain += _streaks(height, width, layer)
    alpha = _transmission(height, width, params)[:, :, None]
    atmosphere = np.asarray(params.atmosphere_rgb, np.float32)
    rainy = alpha * (background + rain[:, :, None]) + (1.0 - alpha) * atmosphere
    return np.clip(rainy, 0.0, 1.0).astype(np.float32), background


def _transmission(height: int, width: int, params: JudgeRainParams) -> np.ndarray:
    """alpha: alpha_far at and above the horizon row, rising to alpha_near at the bottom, with fog patches."""
    rows = (np.arange(height, dtype=np.float32) + 0.5) / height
    ramp = np.clip((rows - params.horizon) / (1.0 - params.horizon), 0.0, 1.0) ** 0.7
    alpha = params.alpha_far + (params.alpha_near - params.alpha_far) * ramp[:, None]
    rng = np.random.default_rng(params.seed)
    coarse = rng.random((4, 6)).astype(np.float32)  # fog patches: a 4x6 random grid, smoothly upsampled
    patches = _upsample(coarse, height, width)
    return np.clip(alpha * (1.0 - params.fog_patchiness * patches), 0.05, 1.0).astype(np.float32)


def _streaks(height: int, width: int, layer: JudgeLayer) -> np.ndarray:
    """Thresholded noise on a coarse grid, motion-blurred along a line, softened, scaled to `gain`."""
    rng = np.random.default_rng(layer.seed)
    h, w = math.ceil(height / layer.scale), math.ceil(width / layer.scale)
    noise = rng.standard_normal((h, w)).astype(np.float32)
    level = np.quantile(noise, layer.drop_quantile)
    drops = np.clip((noise - level) / (noise.max() - level + 1e-6), 0.0, 1.0) ** 0.5
    streaks = _fft_filter(drops, _line(layer.length_px / layer.scale, layer.angle_deg))
    streaks = _upsample(streaks, height, width) if layer.scale > 1 else streaks
    streaks = _fft_filter(streaks, _gaussian(layer.soften_px))
    peak = float(np.quantile(streaks, 0.999)) + 1e-6
    return (layer.gain * np.clip(streaks / peak, 0.0, 1.0)).astype(np.float32)


def _line(length: float, angle_deg: float) -> np.ndarray:
    """A normalized 1-px line of `length` at `angle_deg` from vertical, drawn by sampling points along it."""
    half = max(1, int(math.ceil(length / 2)))
    kernel = np.zeros((2 * half + 1, 2 * half + 1), np.float32)
    theta = math.radians(angle_deg)
    for t in np.linspace(-length / 2, length / 2, max(2, int(length * 3))):
        kernel[int(round(half + t * math.cos(theta))), int(round(half + t * math.sin(theta)))] += 1.0
    return kernel / kernel.sum()


def _gaussian(sigma: float) -> np.ndarray:
    radius = max(1, int(math.ceil(2.5 * sigma)))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(sigma, 1e-3)) ** 2)
    kernel = np.outer(taps, taps).astype(np.float32)
    return kernel / kernel.sum()


def _fft_filter(plane: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Same-size filtering by FFT with zero padding (kernels are small next to the frame)."""
    kh, kw = kernel.shape
    shape = (plane.shape[0] + kh, plane.shape[1] + kw)
    out = np.fft.irfft2(np.fft.rfft2(plane, shape) * np.fft.rfft2(kernel, shape), shape)
    return out[kh // 2:kh // 2 + plane.shape[0], kw // 2:kw // 2 + plane.shape[1]].astype(np.float32)


def _upsample(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(plane.astype(np.float32), mode="F").resize((width, height), Image.BICUBIC),
                      dtype=np.float32)


def judge_folder(images: str | Path, out: str | Path, seed: int, names: list[str] | None = None,
                 long_side: int = 0) -> dict[str, Any]:
    """Render one judge pair per frame into a paired folder (rain/ + clean/, synth.json), atomically."""
    from treefuse.data.synth_pairs import chosen_frames, write_pairs

    sources = chosen_frames(images, names)

    def render(frame: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        params = JudgeRainParams.sample(np.random.default_rng([seed, index]))
        rainy, clean = render_judge_rain(frame, params)
        return rainy, clean, {"params": params.to_dict()}

    record = {"tool": "treefuse.data.judge_rain", "renderer": RENDERER, "seed": seed,
              "ranges": {k: list(v) for k, v in RANGES.items()}}
    write_pairs(out, sources, len(sources), long_side, render, record)
    return {"out": str(out), "pairs": len(sources), "renderer": RENDERER, "seed": seed}
