"""Quality of one backend against ground truth on a paired folder."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.device import device_fingerprint
from treefuse.images import from_batch, paired_images, read_image, to_batch
from treefuse.metrics import METRIC_CONVENTION, image_quality
from treefuse.progress import progress_bar
from treefuse.provenance import provenance
from treefuse.results import EvaluateResult
from treefuse.runtimes.base import Runner


def evaluate(runner: Runner, paired_dir: str | Path, progress: bool = False, threads: int | None = None) -> EvaluateResult:
    """PSNR/SSIM (RGB and Y) per image and their means, plus the rainy input's own scores."""
    pairs = paired_images(paired_dir)
    pairs = progress_bar(pairs, progress, desc="evaluate", unit="img")
    rows = []
    for rainy_path, clean_path in pairs:
        rainy, clean = read_image(rainy_path), read_image(clean_path)
        derained = from_batch(runner.infer(to_batch(rainy)))
        if not np.isfinite(derained).all():  # a score of a NaN image would be a number that means nothing
            raise TreefuseError(f"{runner.spec} gave NaN or Inf pixels on {rainy_path}; the model is broken: "
                                "check it with `treefuse parity`")
        derained = np.clip(derained, 0, 1)
        rows.append({"image": rainy_path.name, **image_quality(derained, clean),
                     "input_psnr_y_db": image_quality(rainy, clean)["psnr_y_db"]})
    keys = [k for k in rows[0] if k != "image"]
    return EvaluateResult(device=device_fingerprint(threads), provenance=provenance(), backend=runner.describe(),
                          data=str(paired_dir), count=len(rows), images=rows, metric=METRIC_CONVENTION,
                          mean={k: float(np.mean([r[k] for r in rows])) for k in keys})
