"""Street-scene rain as car and surveillance cameras see it: streaks, veil, spray, night.

On top of the streaks of `synthetic_rain`, heavy rain on a street adds a veil of airlight that
grows with distance (no depth map: a smooth stand-in, a ground plane below a horizon row, tilted
sideways), blur from drops on the lens, spray rising from the road, and darkness with sensor
noise at night. Streaks come in depth layers: near ones long, wide and blurred by motion,
far ones short, thin and dense. A rendering is a pure function of its StreetRainParams (with
the noise seed inside), and a preset (YAML of ranges, `data/rain_presets/`) says what
`StreetRainParams.sample` draws from.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from treefuse.data.preset_ranges import checked_ranges
from treefuse.errors import TreefuseError
from treefuse.data.synthetic_rain import RainParams, _convolve_same, streak_layer

if TYPE_CHECKING:
    from treefuse.data.depth_rain import DepthRainPreset

PRESET_DIR = Path(__file__).parent / "rain_presets"
# Hard bounds of every preset range: what the renderer accepts at all.
BOUNDS: dict[str, tuple[float, float]] = {
    "angle_deg": (-60.0, 60.0), "layers": (1, 4), "density": (0.0, 0.05), "length_px": (1.0, 200.0),
    "width_px": (0.1, 8.0), "intensity": (0.0, 1.0), "streak_blur_px": (0.0, 5.0), "angle_spread_deg": (0.0, 30.0),
    "veil_beta": (0.0, 5.0), "horizon": (0.0, 1.0), "near_depth": (0.0, 1.0), "tilt": (-1.0, 1.0),
    "airlight": (0.0, 1.0), "airlight_tint": (-0.2, 0.2), "drop_blur_px": (0.0, 6.0), "spray": (0.0, 0.9),
    "night_gain": (0.02, 1.0), "night_airlight": (0.0, 1.0), "night_streak_gain": (0.0, 1.0),
    "noise_sigma": (0.0, 0.1),
}
PROBABILITIES = ("night_probability",)


@dataclass(frozen=True)
class StreetRainParams:
    """Everything that decides one street rendering (image-relative geometry, pixel-sized streaks)."""

    streaks: tuple[RainParams, ...] = (RainParams(),)  # depth layers, far to near
    veil_beta: float = 1.0  # attenuation at the far end: transmission exp(-beta * depth)
    horizon: float = 0.45  # row of the horizon, as a fraction of the frame height
    near_depth: float = 0.15  # depth stand-in at the bottom row (1 at the horizon and above)
    tilt: float = 0.0  # sideways slope of the depth plane (left to right)
    airlight: float = 0.85  # brightness of the veil
    airlight_tint: float = 0.0  # blue minus red shift of the veil's colour
    drop_blur_px: float = 0.0  # Gaussian sigma of lens-drop blur of the scene
    spray: float = 0.0  # strength of road spray below the horizon
    night: bool = False
    night_gain: float = 1.0  # scene brightness at night (applied to the clean frame too)
    night_streak_gain: float = 1.0  # streaks at night are lit only by street lights
    noise_sigma: float = 0.0  # sensor noise (rainy frame only)
    seed: int = 0  # seed of the spray and sensor noise

    def __post_init__(self) -> None:
        values = {k: getattr(self, k) for k in BOUNDS if hasattr(self, k)}
        bad = [k for k, v in values.items() if not BOUNDS[k][0] <= v <= BOUNDS[k][1]]
        if bad or not self.streaks:
            raise TreefuseError(f"street rain params out of range: {bad or ['streaks']}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StreetRainParams":
        data = dict(data)
        data["streaks"] = tuple(RainParams(**s) for s in data.get("streaks", ()))
        return cls(**data)

    @classmethod
    def sample(cls, rng: np.random.Generator, preset: "RainPreset") -> "StreetRainParams":
        """Draw one rendering from the preset's ranges."""
        draw = preset.uniform
        layers = int(round(draw(rng, "layers")))
        angle = draw(rng, "angle_deg")
        streaks = []
        for index in range(layers):
            # depth 0 (far) .. 1 (near): near streaks are longer, wider, sparser, more blurred.
            near = index / max(1, layers - 1) if layers > 1 else float(rng.uniform())
            lo, hi = preset.ranges["length_px"]
            length = lo + (hi - lo) * (0.25 + 0.75 * near) * rng.uniform(0.6, 1.0)
            lo_w, hi_w = preset.ranges["width_px"]
            width = lo_w + (hi_w - lo_w) * near * rng.uniform(0.5, 1.0)
            streaks.append(RainParams(
                angle_deg=float(angle + rng.normal(0.0, 3.0)), length_px=float(max(1.0, length)), width_px=float(max(0.1, width)),
                density=float(draw(rng, "density") * (1.4 - 0.8 * near)), intensity=float(draw(rng, "intensity")),
                blur_px=float(draw(rng, "streak_blur_px") * (0.5 + near)), layers=1,
                angle_spread_deg=float(draw(rng, "angle_spread_deg")), haze=0.0, seed=int(rng.integers(0, 2**31 - 1))))
        night = bool(rng.random() < preset.night_probability)
        tint = draw(rng, "airlight_tint")
        return cls(streaks=tuple(streaks), veil_beta=float(draw(rng, "veil_beta")), horizon=float(draw(rng, "horizon")),
                   near_depth=float(draw(rng, "near_depth")), tilt=float(draw(rng, "tilt")),
                   airlight=float(draw(rng, "night_airlight") if night else draw(rng, "airlight")),
                   airlight_tint=float(tint), drop_blur_px=float(draw(rng, "drop_blur_px")),
                   spray=float(draw(rng, "spray")), night=night,
                   night_gain=float(draw(rng, "night_gain")) if night else 1.0,
                   night_streak_gain=float(draw(rng, "night_streak_gain")) if night else 1.0,
                   noise_sigma=float(draw(rng, "noise_sigma")) if night else 0.0,
                   seed=int(rng.integers(0, 2**31 - 1)))


@dataclass(frozen=True)
class RainPreset:
    """Ranges [low, high] for each street-rain parameter, and the share of night scenes."""

    name: str
    ranges: dict[str, tuple[float, float]]
    night_probability: float

    def uniform(self, rng: np.random.Generator, key: str) -> float:
        low, high = self.ranges[key]
        return float(rng.uniform(low, high))

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "night_probability": self.night_probability,
                **{k: list(v) for k, v in self.ranges.items()}}


def load_preset(name_or_path: str | Path) -> "RainPreset | DepthRainPreset":
    """A shipped preset by name (`street`, `street-flat`) or a YAML file of ranges; one-line errors for bad ones."""
    import yaml

    path = Path(name_or_path)
    if not path.is_file():
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        names = sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))
        raise TreefuseError(f"rain preset not found: {name_or_path} (shipped presets: {names})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise TreefuseError(f"rain preset {path} is not valid YAML") from None
    if not isinstance(data, dict):
        raise TreefuseError(f"rain preset {path} must be a mapping of ranges")
    renderer = data.pop("renderer", "flat")
    if renderer == "depth":
        from treefuse.data.depth_rain import depth_preset_from_dict

        return depth_preset_from_dict(data, str(path))
    if renderer != "flat":
        raise TreefuseError(f"rain preset {path}: renderer must be 'depth' or 'flat', got {renderer!r}")
    return preset_from_dict(data, str(path))


def preset_from_dict(data: dict[str, Any], where: str = "preset") -> RainPreset:
    """Check a mapping of ranges against BOUNDS: every key known and present, low <= high, inside bounds."""
    data = dict(data)
    name = str(data.pop("name", Path(where).stem))
    night = data.pop("night_probability", 0.0)
    if not isinstance(night, (int, float)) or not 0.0 <= night <= 1.0:
        raise TreefuseError(f"rain preset {where}: night_probability must be between 0 and 1, got {night!r}")
    ranges = checked_ranges(data, BOUNDS, str(where))
    return RainPreset(name, ranges, float(night))


def depth_stand_in(height: int, width: int, params: StreetRainParams,
                   frame: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A smooth 0 (near) .. 1 (far) depth for each pixel: a ground plane up to the horizon, far beyond.

    `frame` = (top, left, full_height, full_width) places a crop inside the whole picture, so a
    training patch gets the depth of where it sits in its photo.
    """
    top, left, full_h, full_w = frame or (0, 0, height, width)
    rows = (top + np.arange(height, dtype=np.float32) + 0.5) / full_h
    cols = (left + np.arange(width, dtype=np.float32) + 0.5) / full_w
    below = np.clip((rows - params.horizon) / max(1e-3, 1.0 - params.horizon), 0.0, 1.0)
    # smoothstep: no kink at the horizon, the ground comes closer towards the bottom row.
    ground = 1.0 - (1.0 - params.near_depth) * below * below * (3.0 - 2.0 * below)
    depth = ground[:, None] + params.tilt * (cols[None, :] - 0.5) * (1.0 - ground[:, None] * 0.5)
    return np.clip(depth, 0.0, 1.0).astype(np.float32)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of an HxW or HxWxC image (edges: zero padding renormalized)."""
    if sigma <= 0:
        return image
    radius = int(math.ceil(3 * sigma))
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2).astype(np.float32)
    taps /= taps.sum()
    planes = image[:, :, None] if image.ndim == 2 else image
    ones = np.ones(planes.shape[:2], dtype=np.float32)
    kernel = np.outer(taps, taps)
    norm = _convolve_same(ones, kernel)
    out = np.stack([_convolve_same(planes[:, :, c], kernel) / norm for c in range(planes.shape[2])], axis=2)
    return out[:, :, 0] if image.ndim == 2 else out.astype(np.float32)


def render_street_rain(clean: np.ndarray, params: StreetRainParams,
                       frame: tuple[int, int, int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(rainy, clean target) for an HxWx3 float image in [0, 1]; at night the target is darkened too."""
    if clean.ndim != 3 or clean.shape[2] != 3:
        raise TreefuseError(f"street rain needs an HxWx3 image, got shape {clean.shape}")
    height, width = clean.shape[:2]
    target = clean.astype(np.float32)
    if params.night:
        # Night: a dim scene under warm street lights (less blue); the camera sees it so, clean or not.
        target = np.clip(target * params.night_gain * np.array([1.0, 0.92, 0.8], np.float32), 0.0, 1.0)
    scene = gaussian_blur(target, params.drop_blur_px)
    depth = depth_stand_in(height, width, params, frame)
    transmission = np.exp(-params.veil_beta * depth)[:, :, None]
    airlight = np.clip(params.airlight + params.airlight_tint * np.array([-1.0, 0.0, 1.0], np.float32), 0.0, 1.0)
    rainy = scene * transmission + airlight * (1.0 - transmission)
    noise_rng = np.random.default_rng(params.seed)
    if params.spray > 0:
        # Spray: soft blotches of mist thrown up from the road, densest near the bottom.
        mist = gaussian_blur(noise_rng.random((height, width), dtype=np.float32), 6.0)
        mist = np.clip((mist - mist.mean()) / (mist.std() + 1e-6) * 0.5 + 0.5, 0.0, 1.0)
        bottom = 1.0 - depth_stand_in(height, width, params, frame)
        weight = (params.spray * mist * bottom)[:, :, None]
        rainy = rainy * (1.0 - weight) + airlight * weight
    streaks = np.zeros((height, width), dtype=np.float32)
    for layer in params.streaks:
        streaks = np.maximum(streaks, streak_layer(height, width, layer))
    streaks = (streaks * params.night_streak_gain)[:, :, None]
    rainy = 1.0 - (1.0 - rainy) * (1.0 - streaks)  # screen blend, as in synthetic_rain
    if params.noise_sigma > 0:
        rainy = rainy + noise_rng.normal(0.0, params.noise_sigma, rainy.shape).astype(np.float32)
    return np.clip(rainy, 0.0, 1.0).astype(np.float32), target


def preset_path(name_or_path: str | Path) -> Path:
    """The file a preset name or path refers to (for manifests)."""
    path = Path(name_or_path)
    return path if path.is_file() else PRESET_DIR / f"{name_or_path}.yaml"
