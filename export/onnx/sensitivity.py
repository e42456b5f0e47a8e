"""Per-layer INT8 sensitivity on the task metric, and the search for layers to keep in float.

A layer's sensitivity is how much task PSNR (derained output vs clean, on a paired set)
comes back when only that layer stays in float while every other layer is INT8. Layers
are then kept in float, most sensitive first, until the drop vs FP32 is within budget.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from treefuse.errors import GateFailed
from treefuse.images import paired_images, read_image, to_batch
from treefuse.progress import progress_bar
from treefuse.scoring import score_pairs

Evaluate = Callable[[Sequence[str]], float]  # float layers -> mean task PSNR (dB) of that INT8 model


@dataclass(frozen=True)
class PairedSet:
    """Rainy inputs and clean targets as 1x3xHxW batches, optionally centre-cropped to at most `crop`."""

    rainy: list[np.ndarray]
    clean: list[np.ndarray]
    source: str


def load_paired_set(folder: str | Path, max_pairs: int | None = None, crop: int | None = None) -> PairedSet:
    """The pairs of a paired folder (rain/ + clean/), or its first `max_pairs`."""
    pairs = paired_images(folder)[:max_pairs]
    rainy, clean = [], []
    for rainy_path, clean_path in pairs:
        rainy.append(to_batch(_centre_crop(read_image(rainy_path), crop)))
        clean.append(to_batch(_centre_crop(read_image(clean_path), crop)))
    view = f"centre {crop}x{crop} crops" if crop else "full images"
    return PairedSet(rainy, clean, f"{folder} ({len(pairs)} pairs, {view})")


def _centre_crop(image: np.ndarray, crop: int | None) -> np.ndarray:
    if crop is None:
        return image
    height, width = image.shape[:2]
    top, left = max(0, (height - crop) // 2), max(0, (width - crop) // 2)
    return image[top:top + crop, left:left + crop]


def task_psnr(model_path: str | Path, paired: PairedSet) -> float:
    """Mean RGB PSNR (dB) of an ONNX model's derained outputs against the clean targets."""
    from treefuse.runtimes.backends.onnx_runner import OnnxRuntimeRunner

    pairs = [(str(i), rainy[0].transpose(1, 2, 0), clean[0].transpose(1, 2, 0))
             for i, (rainy, clean) in enumerate(zip(paired.rainy, paired.clean))]
    with OnnxRuntimeRunner(model_path) as runner:
        return score_pairs(runner.infer, pairs, full=False).mean("psnr_rgb_db")


def layer_sensitivity(layers: Sequence[str], evaluate: Evaluate, all_int8_psnr: float,
                      progress: bool = False) -> list[dict[str, Any]]:
    """Task PSNR with only each layer in float, and what that recovers over the all-INT8 model."""
    layers = progress_bar(layers, progress, desc="sensitivity", unit="layer")
    table = []
    for layer in layers:
        psnr = evaluate([layer])
        table.append({"layer": layer, "psnr_db_only_this_float": psnr, "recovered_db": psnr - all_int8_psnr})
    return sorted(table, key=lambda row: -row["recovered_db"])


@dataclass
class BudgetSearch:
    """The outcome: which layers stay float, the drop reached, and each step taken."""

    fp32_psnr: float
    float_layers: list[str] = field(default_factory=list)
    drop_db: float = float("inf")
    steps: list[dict[str, Any]] = field(default_factory=list)


def keep_until_within_budget(fp32_psnr: float, all_int8_psnr: float, table: list[dict[str, Any]],
                             evaluate: Evaluate, max_drop_db: float, max_float_layers: int | None = None) -> BudgetSearch:
    """Keep the most sensitive layers in float, one at a time, until the drop is <= max_drop_db."""
    search = BudgetSearch(fp32_psnr, drop_db=fp32_psnr - all_int8_psnr)
    search.steps.append({"float_layers": [], "psnr_db": all_int8_psnr, "drop_db": search.drop_db})
    limit = len(table) if max_float_layers is None else min(max_float_layers, len(table))
    for row in table[:limit]:
        if search.drop_db <= max_drop_db:
            break
        search.float_layers.append(row["layer"])
        psnr = evaluate(search.float_layers)
        search.drop_db = fp32_psnr - psnr
        search.steps.append({"float_layers": list(search.float_layers), "psnr_db": psnr, "drop_db": search.drop_db,
                             "added": row["layer"], "recovered_alone_db": row["recovered_db"]})
    if search.drop_db > max_drop_db:
        best = min(step["drop_db"] for step in search.steps)
        raise GateFailed(
            f"INT8 cannot meet --max-task-drop {max_drop_db} dB: the best found was {best:.3f} dB with "
            f"{len(search.float_layers)} of {len(table)} layers in float; raise the budget, try another "
            "--calib-method or a calibration set closer to the camera's images, fine-tune for INT8 with "
            "`treefuse qat --data PAIRED_DIR --out RUN` and export with --qat RUN, or use fp16")
    return search
