"""Depth-aware, randomized street rain: the generator street training and `treefuse synth` draw from.

Given a frame and its SceneDepth (`scene_depth.py`), the veil follows depth: transmission
t = exp(-beta * depth), O = B * t + A * (1 - t), with the airlight A taken from the frame's own
sky colour (mixed with a neutral grey and a tint). Streaks come in depth layers at depths z_k:
near layers long, wide, sparse and blurred, far layers short, thin and dense; a layer shows only
where the scene lies behind it and is itself veiled by exp(-beta * z_k). What no single renderer
can pin down is drawn at random (`DepthRainParams.sample` from a preset's ranges): beta, airlight
colour, angle, length, width, density, layer count, scene motion blur, brightness, sensor noise
and JPEG quality. A rendering is a pure function of (frame, scene, params).
"""
from __future__ import annotations

import dataclasses
import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from treefuse.data.preset_ranges import checked_ranges
from treefuse.errors import TreefuseError
from treefuse.data.scene_depth import SceneDepth, estimate_depth
from treefuse.data.synthetic_rain import RainParams, _convolve_same, streak_layer

RENDERER = "depth"
# Hard bounds of every preset range: what the renderer accepts at all.
BOUNDS: dict[str, tuple[float, float]] = {
    "beta": (0.0, 5.0), "airlight_gain": (0.3, 1.3), "airlight_grey": (0.0, 1.0), "airlight_tint": (-0.2, 0.2),
    "angle_deg": (-60.0, 60.0), "angle_spread_deg": (0.0, 30.0), "layers": (1, 5), "density": (0.0, 0.05),
    "length_px": (1.0, 200.0), "width_px": (0.1, 8.0), "intensity": (0.0, 1.0), "streak_blur_px": (0.0, 5.0),
    "near_layer_depth": (0.01, 0.5), "far_layer_depth": (0.05, 0.99), "motion_blur_px": (0.0, 10.0),
    "brightness": (0.2, 1.5), "noise_sigma": (0.0, 0.1), "jpeg_quality": (10, 100),
}
PROBABILITIES = ("motion_blur_probability", "jpeg_probability")
VISIBILITY_SOFTNESS = 0.03  # depth over which a streak layer fades in behind a surface


@dataclass(frozen=True)
class DepthLayer:
    """One sheet of streaks at depth `depth` (0 near .. 1 far)."""

    depth: float
    streaks: RainParams


@dataclass(frozen=True)
class DepthRainParams:
    """Everything that decides one depth-aware rendering (with the noise seeds inside)."""

    layers: tuple[DepthLayer, ...]
    beta: float = 1.0  # veil: transmission exp(-beta * depth)
    airlight_rgb: tuple[float, float, float] = (0.8, 0.8, 0.8)  # the veil's colour
    motion_blur_px: float = 0.0  # camera motion blur of the scene (clean target too)
    motion_angle_deg: float = 0.0
    brightness: float = 1.0  # scene exposure (clean target too): rain falls under dark skies
    noise_sigma: float = 0.0  # sensor noise (rainy frame only)
    jpeg_quality: int = 0  # 0: no JPEG; else the rainy frame goes through JPEG at this quality
    seed: int = 0  # seed of the sensor noise

    def __post_init__(self) -> None:
        checks = {"layers": bool(self.layers), "beta": 0 <= self.beta <= BOUNDS["beta"][1],
                  "airlight_rgb": len(self.airlight_rgb) == 3 and all(0 <= c <= 1 for c in self.airlight_rgb),
                  "motion_blur_px": 0 <= self.motion_blur_px <= BOUNDS["motion_blur_px"][1],
                  "brightness": BOUNDS["brightness"][0] <= self.brightness <= BOUNDS["brightness"][1],
                  "noise_sigma": 0 <= self.noise_sigma <= BOUNDS["noise_sigma"][1],
                  "jpeg_quality": self.jpeg_quality == 0 or 10 <= self.jpeg_quality <= 100,
                  "layer depth": all(0 < layer.depth < 1 for layer in self.layers)}
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise TreefuseError(f"depth rain params out of range: {bad}")

    def to_dict(self) -> dict[str, Any]:
        return {"renderer": RENDERER, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DepthRainParams":
        data = {k: v for k, v in data.items() if k != "renderer"}
        data["layers"] = tuple(DepthLayer(float(l["depth"]), RainParams(**l["streaks"])) for l in data["layers"])
        data["airlight_rgb"] = tuple(float(c) for c in data["airlight_rgb"])
        return cls(**data)

    @classmethod
    def sample(cls, rng: np.random.Generator, preset: "DepthRainPreset", sky_rgb: tuple[float, float, float]) -> "DepthRainParams":
        """Draw one rendering from the preset's ranges; the veil's colour starts from the frame's sky."""
        draw = preset.uniform
        count = int(rng.integers(int(preset.ranges["layers"][0]), int(preset.ranges["layers"][1]) + 1))
        angle = draw(rng, "angle_deg")
        near_z, far_z = draw(rng, "near_layer_depth"), draw(rng, "far_layer_depth")
        layers = []
        for index in range(count):
            far = index / (count - 1) if count > 1 else float(rng.uniform())  # 0 nearest layer .. 1 farthest
            depth = near_z * (max(far_z, near_z + 0.01) / near_z) ** far  # geometric spacing in depth
            near = 1.0 - far
            lo, hi = preset.ranges["length_px"]
            lo_w, hi_w = preset.ranges["width_px"]
            length = max(1.0, lo + (hi - lo) * (0.15 + 0.85 * near) * rng.uniform(0.7, 1.0))
            layers.append(DepthLayer(float(depth), RainParams(
                angle_deg=float(angle + rng.normal(0.0, 2.0 + 3.0 * near)), length_px=float(length),
                width_px=float(max(0.1, lo_w + (hi_w - lo_w) * near * rng.uniform(0.6, 1.0))),
                density=float(draw(rng, "density") * (0.1 + 0.9 * far) * min(1.0, 30.0 / length)),
                intensity=float(draw(rng, "intensity") * (0.55 + 0.45 * far)),  # out of focus near drops are fainter
                blur_px=float(draw(rng, "streak_blur_px") * (0.3 + near)), layers=1,
                angle_spread_deg=float(draw(rng, "angle_spread_deg")), haze=0.0,
                seed=int(rng.integers(0, 2**31 - 1)))))
        grey = draw(rng, "airlight_grey")
        tint = draw(rng, "airlight_tint")
        sky = np.asarray(sky_rgb, np.float32)
        colour = (sky * (1 - grey) + sky.mean() * grey) * draw(rng, "airlight_gain") + tint * np.array([-1.0, 0.0, 1.0])
        blur = draw(rng, "motion_blur_px") if rng.random() < preset.motion_blur_probability else 0.0
        quality = int(round(draw(rng, "jpeg_quality"))) if rng.random() < preset.jpeg_probability else 0
        return cls(layers=tuple(layers), beta=float(draw(rng, "beta")),
                   airlight_rgb=tuple(float(c) for c in np.clip(colour, 0.0, 1.0)),
                   motion_blur_px=float(blur), motion_angle_deg=float(rng.uniform(-180.0, 180.0)),
                   brightness=float(draw(rng, "brightness")), noise_sigma=float(draw(rng, "noise_sigma")),
                   jpeg_quality=quality, seed=int(rng.integers(0, 2**31 - 1)))


@dataclass(frozen=True)
class DepthRainPreset:
    """Ranges [low, high] for each depth-rain parameter, and the chances of motion blur and JPEG."""

    name: str
    ranges: dict[str, tuple[float, float]]
    motion_blur_probability: float
    jpeg_probability: float
    renderer: str = RENDERER

    def uniform(self, rng: np.random.Generator, key: str) -> float:
        low, high = self.ranges[key]
        return float(rng.uniform(low, high))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "renderer": RENDERER, "motion_blur_probability": self.motion_blur_probability,
                "jpeg_probability": self.jpeg_probability, **{k: list(v) for k, v in self.ranges.items()}}


def depth_preset_from_dict(data: dict[str, Any], where: str = "preset") -> DepthRainPreset:
    """Check a mapping of ranges against BOUNDS: every key known and present, low <= high, inside bounds."""
    data = dict(data)
    data.pop("renderer", None)
    name = str(data.pop("name", where))
    chances = {key: data.pop(key, 0.0) for key in PROBABILITIES}
    for key, value in chances.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise TreefuseError(f"rain preset {where}: {key} must be between 0 and 1, got {value!r}")
    ranges = checked_ranges(data, BOUNDS, str(where))
    if ranges["near_layer_depth"][1] >= ranges["far_layer_depth"][0]:
        raise TreefuseError(f"rain preset {where}: near_layer_depth must lie below far_layer_depth")
    return DepthRainPreset(name, ranges, float(chances["motion_blur_probability"]), float(chances["jpeg_probability"]))


def motion_blur(image: np.ndarray, length_px: float, angle_deg: float) -> np.ndarray:
    """Blur along a line of `length_px` at `angle_deg` (camera shake), edges renormalized."""
    if length_px < 0.5:
        return image
    half = int(math.ceil(length_px / 2))
    ys, xs = np.mgrid[-half:half + 1, -half:half + 1].astype(np.float32)
    theta = math.radians(angle_deg)
    across = np.abs(xs * math.sin(theta) - ys * math.cos(theta))
    along = np.abs(xs * math.cos(theta) + ys * math.sin(theta))
    kernel = (np.clip(1.0 - across, 0.0, 1.0) * (along <= length_px / 2 + 0.5)).astype(np.float32)
    norm = _convolve_same(np.ones(image.shape[:2], np.float32), kernel)
    return np.stack([_convolve_same(image[:, :, c], kernel) / norm for c in range(3)], axis=2).astype(np.float32)


def render_depth_rain(clean: np.ndarray, scene: SceneDepth | None, params: DepthRainParams) -> tuple[np.ndarray, np.ndarray]:
    """(rainy, clean target) for an HxWx3 float image in [0, 1]; `scene` None: estimated from `clean`."""
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise TreefuseError(f"depth rain needs an HxWx3 image, got shape {clean.shape}")
    scene = scene if scene is not None else estimate_depth(clean)
    if scene.depth.shape != clean.shape[:2]:
        raise TreefuseError(f"depth map {scene.depth.shape} does not match the frame {clean.shape[:2]}")
    height, width = clean.shape[:2]
    # Exposure and camera shake belong to the scene: the clean target shows them too.
    target = np.clip(clean.astype(np.float32) * params.brightness, 0.0, 1.0)
    target = motion_blur(target, params.motion_blur_px, params.motion_angle_deg)
    airlight = np.asarray(params.airlight_rgb, np.float32)
    transmission = np.exp(-params.beta * scene.depth)[:, :, None]
    rainy = target * transmission + airlight * (1.0 - transmission)
    streak_colour = np.clip(0.35 + 0.75 * airlight, 0.0, 1.0)  # drops refract the sky's light, brighter than it
    for layer in sorted(params.layers, key=lambda l: -l.depth):  # far to near: near layers cover far ones
        opacity = streak_layer(height, width, layer.streaks)
        behind = 1.0 / (1.0 + np.exp(-(scene.depth - layer.depth) / VISIBILITY_SOFTNESS))
        veiled = math.exp(-params.beta * layer.depth)
        alpha = (opacity * behind)[:, :, None]
        colour = streak_colour * veiled + airlight * (1.0 - veiled)
        rainy = rainy * (1.0 - alpha) + colour * alpha
    noise_rng = np.random.default_rng(params.seed)
    if params.noise_sigma > 0:
        # Shot noise grows with the signal, read noise does not.
        sigma = params.noise_sigma * np.sqrt(0.3 + 0.7 * np.clip(rainy, 0.0, 1.0))
        rainy = rainy + sigma * noise_rng.standard_normal(rainy.shape).astype(np.float32)
    rainy = np.clip(rainy, 0.0, 1.0).astype(np.float32)
    if params.jpeg_quality:
        rainy = jpeg_round_trip(rainy, params.jpeg_quality)
    return rainy, target.astype(np.float32)


def jpeg_round_trip(image: np.ndarray, quality: int) -> np.ndarray:
    """The image as a camera's JPEG encoder at `quality` leaves it (4:2:0 chroma)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(image * 255.0).astype(np.uint8)).save(buffer, "JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.float32) / 255.0

