"""A plausible per-pixel depth of a street frame without a learned model: sky, horizon, ground, facades.

The frame is read as a box seen from a car: sky (bright, smooth, blue or grey, connected to the
top edge) is infinitely far; below the horizon lies a ground plane whose distance grows as
1 / (row - horizon); above it stand vertical facades, nearer where they rise higher above the
horizon (a facade's apparent height falls as 1 / distance). A pixel's depth is the nearest
surface its ray meets: min(ground(row), facade(column)), sky = 1. Depth is 0 (at the camera)
.. 1 (far, sky); the veil's transmission is exp(-beta * depth). All of it is computed on a
small copy (long side DEPTH_LONG_SIDE) and scaled back, so a 1280x720 frame takes a few ms.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEPTH_LONG_SIDE = 160
HORIZON_RANGE = (0.25, 0.65)
GROUND_NEAR = 0.06  # depth of the bottom row: a few metres ahead of a car camera
GROUND_NEAR_NO_SKY = 0.15  # a camera that sees no sky mostly looks down from higher up
FACADE_HEIGHT = 0.06  # facade depth = FACADE_HEIGHT / (its height above the horizon, in frame heights)
SKY_MIN_SHARE = 0.005  # less sky than this: treat the frame as having none


@dataclass(frozen=True)
class SceneDepth:
    """Depth (HxW, 0 near .. 1 far), sky mask, horizon row (fraction of height) and sky colour of a frame."""

    depth: np.ndarray
    sky: np.ndarray
    horizon: float
    sky_rgb: tuple[float, float, float]

    def crop(self, top: int, left: int, height: int, width: int) -> "SceneDepth":
        """The same scene restricted to a window (horizon and sky colour stay those of the whole frame)."""
        window = (slice(top, top + height), slice(left, left + width))
        return SceneDepth(self.depth[window], self.sky[window], self.horizon, self.sky_rgb)

    def to_dict(self) -> dict:
        """What a manifest records about the estimate (the map itself is re-derived from the frame)."""
        return {"horizon": round(self.horizon, 4), "sky_rgb": [round(c, 4) for c in self.sky_rgb],
                "sky_share": round(float(self.sky.mean()), 4), "mean_depth": round(float(self.depth.mean()), 4)}


def estimate_depth(image: np.ndarray) -> SceneDepth:
    """Depth of an HxWx3 frame (uint8, or float in [0, 1]) by the sky / ground / facade model."""
    pixels = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else image.astype(np.float32)
    height, width = pixels.shape[:2]
    small = _shrink(pixels, DEPTH_LONG_SIDE)
    sky = _sky_mask(small)
    h = small.shape[0]
    sky_bottom = sky.sum(axis=0)  # sky is connected to the top edge, so its row count is its lower edge
    has_sky = sky.mean() >= SKY_MIN_SHARE
    if has_sky:
        # The lowest sky (open road ahead, between buildings) reaches down to about the horizon.
        horizon = float(np.clip(np.percentile(sky_bottom, 90) / h, *HORIZON_RANGE))
        depth_small = _box_model(h, small.shape[1], horizon, sky_bottom, sky)
    else:
        # No sky: a camera looking down (a pole, an overpass) or under trees; ground recedes to the top row.
        horizon, sky = 0.0, np.zeros_like(sky)
        depth_small = _ground_only(h, small.shape[1])
    depth = np.clip(_resize(depth_small, height, width), 0.0, 1.0)
    sky_full = _resize(sky.astype(np.float32), height, width) > 0.5
    return SceneDepth(depth.astype(np.float32), sky_full, horizon, _sky_colour(small, sky))


def _ground(h: int, horizon: float, near: float) -> np.ndarray:
    """Depth of a ground plane per row: 1 / (row - horizon) perspective, `near` at the bottom row."""
    rows = (np.arange(h, dtype=np.float32) + 0.5) / h
    below = np.maximum(rows - horizon, 1e-4) / (1.0 - horizon)  # 0 at the horizon, 1 at the bottom row
    return np.where(rows > horizon, np.minimum(1.0, near / below), 1.0).astype(np.float32)


def _ground_only(h: int, w: int) -> np.ndarray:
    return _smooth_2d(np.repeat(_ground(h, 0.0, GROUND_NEAR_NO_SKY)[:, None], w, axis=1), max(1, h // 60))


def _box_model(h: int, w: int, horizon: float, sky_bottom: np.ndarray, sky: np.ndarray) -> np.ndarray:
    ground = _ground(h, horizon, GROUND_NEAR)
    rise = np.maximum(horizon - sky_bottom / h, 0.0)  # facade height above the horizon, per column
    facade = np.minimum(1.0, FACADE_HEIGHT / np.maximum(rise, 1e-4))
    facade = _smooth_1d(facade.astype(np.float32), max(1, w // 40))
    depth = np.minimum(ground[:, None], facade[None, :])
    depth = np.where(sky, 1.0, depth).astype(np.float32)
    return _smooth_2d(depth, max(1, h // 60))


def _sky_mask(small: np.ndarray) -> np.ndarray:
    """Sky: bright or blue, smooth, and reachable from the top edge without crossing anything else."""
    luma = small @ np.array([0.299, 0.587, 0.114], np.float32)
    blue = small[:, :, 2] - small[:, :, 0]
    grad = np.abs(np.diff(luma, axis=0, append=luma[-1:])) + np.abs(np.diff(luma, axis=1, append=luma[:, -1:]))
    texture = _smooth_2d(grad, 1)
    bright = luma > max(0.5, float(np.percentile(luma, 60)))
    skylike = (texture < 0.045) & (bright | ((blue > 0.04) & (luma > 0.3)))
    h = small.shape[0]
    skylike[int(0.75 * h):] = False  # sky never fills the bottom quarter of a road frame
    # Per column: the unbroken run of sky-like pixels from the top row down.
    return np.cumprod(skylike, axis=0).astype(bool)


def _sky_colour(small: np.ndarray, sky: np.ndarray) -> tuple[float, float, float]:
    if sky.sum() >= 4:
        colour = small[sky].mean(axis=0)
    else:
        # No sky: the brightest tenth of the top third stands in for the light falling on the scene.
        top = small[: max(1, small.shape[0] // 3)].reshape(-1, 3)
        luma = top.mean(axis=1)
        colour = top[luma >= np.percentile(luma, 90)].mean(axis=0)
    return tuple(float(c) for c in np.clip(colour, 0.0, 1.0))


def _shrink(image: np.ndarray, long_side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = long_side / max(height, width)
    if scale >= 1.0:
        return image
    return np.stack([_resize(image[:, :, c], max(8, round(height * scale)), max(8, round(width * scale)))
                     for c in range(3)], axis=2)


def _resize(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of one HxW plane (pixel centres aligned); monotone rows stay monotone."""
    src_h, src_w = plane.shape
    ys = np.clip((np.arange(height) + 0.5) * src_h / height - 0.5, 0, src_h - 1)
    xs = np.clip((np.arange(width) + 0.5) * src_w / width - 0.5, 0, src_w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, src_h - 1), np.minimum(x0 + 1, src_w - 1)
    fy, fx = (ys - y0)[:, None].astype(np.float32), (xs - x0)[None, :].astype(np.float32)
    top = plane[y0][:, x0] * (1 - fx) + plane[y0][:, x1] * fx
    bottom = plane[y1][:, x0] * (1 - fx) + plane[y1][:, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float32)


def _smooth_1d(values: np.ndarray, radius: int) -> np.ndarray:
    padded = np.pad(values, radius, mode="edge")
    kernel = np.ones(2 * radius + 1, np.float32) / (2 * radius + 1)
    return np.convolve(padded, kernel, mode="valid").astype(np.float32)


def _smooth_2d(plane: np.ndarray, radius: int) -> np.ndarray:
    """Box blur with edge replication: a positive kernel, so it keeps monotone columns monotone."""
    rows = np.apply_along_axis(_smooth_1d, 0, plane, radius)
    return np.apply_along_axis(_smooth_1d, 1, rows, radius).astype(np.float32)
