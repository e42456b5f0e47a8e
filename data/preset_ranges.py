"""A rain preset's [low, high] ranges checked against its renderer's hard bounds (every renderer's presets)."""
from __future__ import annotations

from typing import Any, Mapping

from treefuse.errors import TreefuseError


def checked_ranges(data: Mapping[str, Any], bounds: Mapping[str, tuple[float, float]],
                   where: str) -> dict[str, tuple[float, float]]:
    """Every key of `bounds` present and no other, each a [low, high] pair of numbers inside its bounds."""
    unknown, missing = sorted(set(data) - set(bounds)), sorted(set(bounds) - set(data))
    if unknown or missing:
        raise TreefuseError(f"rain preset {where}: unknown keys {unknown}, missing keys {missing}")
    ranges = {}
    for key, value in data.items():
        ok = (isinstance(value, (list, tuple)) and len(value) == 2
              and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value))
        if not ok or not bounds[key][0] <= value[0] <= value[1] <= bounds[key][1]:
            raise TreefuseError(f"rain preset {where}: {key} must be [low, high] within {list(bounds[key])}, got {value!r}")
        ranges[key] = (float(value[0]), float(value[1]))
    return ranges
