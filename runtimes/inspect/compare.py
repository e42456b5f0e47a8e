"""Layer by layer: how far a candidate's every layer is from the reference's, and where it first goes wrong.

A layer's PSNR is taken against the reference layer's own peak (its largest magnitude), so a
feature map of range 0..6 and the [0, 1] output are judged on the same scale; the threshold is
the candidate precision's output-PSNR gate (treefuse/gates.py).
"""
from __future__ import annotations

import math
from typing import Any, Iterable

import numpy as np



def layer_psnr_db(reference: np.ndarray, candidate: np.ndarray) -> float:
    """PSNR of `candidate` against `reference`, peak = the reference's largest magnitude; inf when equal."""
    if not np.all(np.isfinite(candidate)):
        return -math.inf
    peak = float(np.max(np.abs(reference))) or 1.0  # an all-zero layer: judge on the unit scale
    mse = float(np.mean((reference.astype(np.float64) - candidate.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak * peak / mse)


def compare_layers(reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """One row per layer both expose, in the reference's execution order: PSNR, max abs error, peak."""
    rows = []
    for layer, ref in reference.items():
        cand = candidate.get(layer)
        if cand is None or cand.shape != ref.shape:
            continue
        rows.append({"layer": layer, "psnr_db": layer_psnr_db(ref, cand),
                     "max_abs_error": float(np.max(np.abs(ref - cand))) if np.all(np.isfinite(cand)) else math.inf,
                     "reference_peak": float(np.max(np.abs(ref)))})
    return rows


def worst_of(images_rows: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Per layer, the worst figures over several images (lowest PSNR, largest error)."""
    merged: dict[str, dict[str, Any]] = {}
    for rows in images_rows:
        for row in rows:
            seen = merged.setdefault(row["layer"], dict(row))
            seen["psnr_db"] = min(seen["psnr_db"], row["psnr_db"])
            seen["max_abs_error"] = max(seen["max_abs_error"], row["max_abs_error"])
            seen["reference_peak"] = max(seen["reference_peak"], row["reference_peak"])
    return list(merged.values())


def first_diverging(rows: list[dict[str, Any]], min_layer_psnr_db: float) -> str | None:
    """The first layer (execution order) below `min_layer_psnr_db`, or None."""
    for row in rows:
        if not row["psnr_db"] >= min_layer_psnr_db:
            return row["layer"]
    return None
