"""Derain an image of any size tile by tile, so memory stays bounded, with overlaps blended seamlessly.

An output pixel of this network depends on input pixels up to `receptive_radius` away
(head 3x3: 1, each block's 3x3 at dilation DF: DF, the 1x1 fuses and tail: 0), 33 px for
the default model. Each tile's weight is zero within that distance of an edge it shares
with a neighbour and ramps up to 1 after it, so every pixel that counts saw its full
context: with overlap >= 2 * radius + 1 the tiled output equals the untiled one up to
float rounding. A smaller overlap still works but pixels near seams are approximate.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError


def receptive_radius(config: ModelConfig) -> int:
    """How far (in pixels) an output pixel looks into the input."""
    return 1 + config.blocks * config.dilation_factor


RECEPTIVE_RADIUS = receptive_radius(ModelConfig())  # 33 px for the shipped model
DEFAULT_OVERLAP = 96  # >= 2 * 33 + 1 for exact seams, plus a 30 px blend ramp


def exact_overlap(radius: int) -> int:
    """The default overlap for a model that sees `radius` px: exact seams plus a 30 px blend ramp."""
    return max(DEFAULT_OVERLAP, 2 * radius + 31)


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets along one axis: stride tile - overlap, the last tile flush with the end."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def edge_weights(start: int, size: int, length: int, overlap: int, margin: int) -> np.ndarray:
    """Blend weight along one axis of a tile: 0 within `trim` px of an inner edge, ramping to 1."""
    trim = max(min(margin, (overlap - 1) // 2), 0)
    ramp = max(overlap - 2 * trim, 0)
    index = np.arange(size, dtype=np.float64)
    distance = np.full(size, np.inf)
    if start > 0:
        distance = np.minimum(distance, index)
    if start + size < length:
        distance = np.minimum(distance, size - 1 - index)
    return np.clip((distance - trim + 1) / (ramp + 1), 0.0, 1.0)


def check_tiling(tile: int, overlap: int) -> None:
    if overlap < 0:
        raise TreefuseError(f"--overlap must be 0 or more, got {overlap}")
    if tile <= overlap:
        raise TreefuseError(f"--tile {tile} must be larger than --overlap {overlap}; "
                            f"use e.g. --tile 512 --overlap {DEFAULT_OVERLAP}")


def derain_tiled(infer: Callable[[np.ndarray], np.ndarray], image: np.ndarray, tile: int,
                 overlap: int = DEFAULT_OVERLAP, margin: int = RECEPTIVE_RADIUS) -> np.ndarray:
    """Run `infer` (1x3xhxw -> 1x3xhxw) over tiles of an HxWx3 image and blend them back into HxWx3."""
    check_tiling(tile, overlap)
    height, width = image.shape[:2]
    total = np.zeros(image.shape, dtype=np.float64)
    weight = np.zeros((height, width, 1), dtype=np.float64)
    for top in tile_starts(height, tile, overlap):
        for left in tile_starts(width, tile, overlap):
            rows, cols = min(tile, height), min(tile, width)
            patch = image[top:top + rows, left:left + cols]
            output = infer(np.ascontiguousarray(patch.transpose(2, 0, 1)[None], dtype=np.float32))[0].transpose(1, 2, 0)
            w = np.outer(edge_weights(top, rows, height, overlap, margin), edge_weights(left, cols, width, overlap, margin))
            total[top:top + rows, left:left + cols] += output * w[:, :, None]
            weight[top:top + rows, left:left + cols] += w[:, :, None]
    return (total / weight).astype(np.float32)
