"""Quality of one backend against ground truth on a paired folder."""
from __future__ import annotations

from pathlib import Path


from treefuse.device import device_fingerprint
from treefuse.images import paired_images, read_image
from treefuse.progress import progress_bar
from treefuse.provenance import provenance
from treefuse.results import EvaluateResult
from treefuse.scoring import score_pairs
from treefuse.runtimes.backends.base import Runner


def evaluate(runner: Runner, paired_dir: str | Path, progress: bool = False, threads: int | None = None) -> EvaluateResult:
    """PSNR/SSIM (RGB and Y) per image and their means, plus the rainy input's own scores."""
    paths = paired_images(paired_dir)
    pairs = ((rainy.name, read_image(rainy), read_image(clean))
             for rainy, clean in progress_bar(paths, progress, desc="evaluate", unit="img"))
    scores = score_pairs(runner.infer, pairs, full=True, with_input=True, model=runner.spec)
    return EvaluateResult(device=device_fingerprint(threads), provenance=provenance(), backend=runner.describe(),
                          data=str(paired_dir), count=len(scores.rows), images=scores.rows, metric=scores.metric,
                          mean=scores.means())
