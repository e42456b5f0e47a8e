"""One scoring path: derain each pair with any `infer` and score it against ground truth.

`treefuse evaluate`, the INT8 sensitivity search and training validation all call
`score_pairs`, so one image scores the same everywhere. Outputs are clipped to [0, 1]
before scoring; the metric conventions are `treefuse.metrics.METRIC_CONVENTION`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.metrics import METRIC_CONVENTION, calculate_psnr, image_quality

Infer = Callable[[np.ndarray], np.ndarray]  # 1x3xHxW float32 in [0, 1] -> 1x3xHxW
Pair = tuple[str, np.ndarray, np.ndarray]  # name, rainy HxWx3, clean HxWx3 (float32 in [0, 1])


@dataclass
class PairScores:
    """Per-image scores and their means, with the convention they were taken in."""

    rows: list[dict[str, float | str]] = field(default_factory=list)
    metric: dict[str, str] = field(default_factory=lambda: dict(METRIC_CONVENTION))

    def mean(self, key: str) -> float:
        return float(np.mean([row[key] for row in self.rows]))

    def means(self) -> dict[str, float]:
        keys = [key for key in self.rows[0] if key != "image"] if self.rows else []
        return {key: self.mean(key) for key in keys}


def score_pairs(infer: Infer, pairs: Iterable[Pair], full: bool = True, with_input: bool = False,
                model: str = "the model") -> PairScores:
    """PSNR/SSIM (RGB and Y) of every derained pair; `full=False` scores RGB PSNR only (the fast path)."""
    scores = PairScores()
    for name, rainy, clean in pairs:
        batch = np.ascontiguousarray(rainy.transpose(2, 0, 1)[None], dtype=np.float32)
        derained = infer(batch)[0].transpose(1, 2, 0)
        if not np.isfinite(derained).all():  # a score of a NaN image would be a number that means nothing
            raise TreefuseError(f"{model} gave NaN or Inf pixels on {name}; the model is broken: "
                                "check it with `treefuse parity`")
        derained = np.clip(derained, 0, 1)
        row: dict[str, float | str] = {"image": name}
        row.update(image_quality(derained, clean) if full else {"psnr_rgb_db": calculate_psnr(derained, clean)})
        if with_input:
            row["input_psnr_y_db"] = calculate_psnr(rainy, clean, test_y_channel=True)
        scores.rows.append(row)
    return scores
