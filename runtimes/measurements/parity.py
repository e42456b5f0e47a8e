"""Parity: run a reference and a candidate backend on the same images and judge the difference.

`output_psnr_db` compares the candidate's output with the reference's (both clipped to
[0, 1]); on paired folders `task` scores each against ground truth and reports the mean drop,
and `worst_image` names the image that loses most (a mean over many frames hides one bad frame).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from treefuse.device import device_fingerprint
from treefuse.errors import TreefuseError
from treefuse.gates import DEFAULT_GATES, Gates, gates_for
from treefuse.images import from_batch, is_paired_folder, list_images, paired_images, read_image, to_batch
from treefuse.portable.quality import judge_rows, parity_row
from treefuse.progress import progress_bar
from treefuse.provenance import provenance
from treefuse.results import ParityResult
from treefuse.runtimes.backends.base import Runner


@dataclass(frozen=True)
class ParityGates:
    """The gates a candidate is judged by (from the one table in treefuse.gates) and the metric's channel."""

    gates: Gates = DEFAULT_GATES["fp32"]
    test_y_channel: bool = False

    @property
    def min_output_psnr_db(self) -> float:
        return self.gates.min_output_psnr_db

    @property
    def max_task_drop_db(self) -> float:
        return self.gates.max_task_drop_db

    @property
    def max_worst_task_drop_db(self) -> float | None:
        return self.gates.max_worst_task_drop_db


def image_set(folder: str | Path) -> list[tuple[Path, Path | None]]:
    """(input, ground truth or None) for a paired folder or a plain folder of images."""
    folder = Path(folder)
    if is_paired_folder(folder):
        return [(rain, clean) for rain, clean in paired_images(folder)]
    images = list_images(folder)
    if not images:
        raise TreefuseError(f"{folder} holds no images (expected image files, or rain/ and clean/ folders)")
    return [(image, None) for image in images]


Sample = tuple[str, np.ndarray, "np.ndarray | None"]  # name, rainy HxWx3 in [0, 1], clean HxWx3 or None


def folder_samples(images: list[tuple[Path, Path | None]]) -> Iterator[Sample]:
    """Samples read lazily from (input, ground truth or None) paths."""
    for rainy_path, clean_path in images:
        yield str(rainy_path), read_image(rainy_path), None if clean_path is None else read_image(clean_path)


def run_parity(reference: Runner, candidate: Runner, images: list[tuple[Path, Path | None]],
               gates: ParityGates | None = None, progress: bool = False) -> dict[str, Any]:
    """Run both backends on every image and return the parity result (with `passed`).

    Without `gates`, the candidate is judged by the default gates of its own precision.
    """
    return parity_over(reference, candidate, folder_samples(images), gates, progress, total=len(images))


def parity_result(reference: Runner, candidate: Runner, images_dir: str | Path, gates: ParityGates | None = None,
                  threads: int | None = None, progress: bool = False) -> ParityResult:
    """The typed parity record of a folder: verdict, gates, per-image rows, both artifacts, device, provenance."""
    judged = run_parity(reference, candidate, image_set(images_dir), gates, progress)
    return ParityResult(device=device_fingerprint(threads), provenance=provenance(), reference=reference.describe(),
                        candidate=candidate.describe(), images_dir=str(images_dir), **judged)


def parity_over(reference: Runner, candidate: Runner, samples: Iterable[Sample], gates: ParityGates | None = None,
                progress: bool = False, total: int | None = None) -> dict[str, Any]:
    """Parity over in-memory samples: what `parity`, `sweep` and export's own verification share."""
    gates = gates or ParityGates(gates_for(candidate.compute_precision()))
    y = gates.test_y_channel
    per_image = []
    for name, rainy, clean in progress_bar(samples, progress, desc="parity", unit="img", total=total):
        reference_raw = from_batch(reference.infer(to_batch(rainy)))
        if not np.isfinite(reference_raw).all():
            raise TreefuseError(f"the reference {reference.spec} produced NaN or Inf on {name}; "
                                "a reference must be trustworthy: use the FP32 weights")
        candidate_raw = from_batch(candidate.infer(to_batch(rainy)))
        per_image.append(parity_row(name, candidate_raw, reference_raw, clean, y))
    return judge(per_image, gates)


def judge(per_image: list[dict[str, Any]], gates: ParityGates) -> dict[str, Any]:
    """Summarise per-image rows and apply the gates; re-runnable on saved rows (the code device bundles run)."""
    return judge_rows(per_image, gates.gates.to_json(), gates.test_y_channel)
