"""Parity: run a reference and a candidate backend on the same images and judge the difference.

`output_psnr_db` compares the candidate's output with the reference's (both clipped to
[0, 1]); on paired folders `task` scores each against ground truth and reports the drop.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.images import from_batch, is_paired_folder, list_images, paired_images, read_image, to_batch
from treefuse.metrics import METRIC_CONVENTION, calculate_psnr
from treefuse.runtimes.base import Runner

DEFAULT_MIN_PSNR_DB = 40.0  # a negated 3x3 kernel scores ~10-20 dB; a correct FP32 export > 80 dB
DEFAULT_MAX_TASK_DROP_DB = 0.1


@dataclass(frozen=True)
class ParityGates:
    """What a candidate must achieve to pass."""

    min_output_psnr_db: float = DEFAULT_MIN_PSNR_DB
    max_task_drop_db: float = DEFAULT_MAX_TASK_DROP_DB
    test_y_channel: bool = False


def image_set(folder: str | Path) -> list[tuple[Path, Path | None]]:
    """(input, ground truth or None) for a paired folder or a plain folder of images."""
    folder = Path(folder)
    if is_paired_folder(folder):
        return [(rain, clean) for rain, clean in paired_images(folder)]
    images = list_images(folder)
    if not images:
        raise TreefuseError(f"{folder} holds no images (expected image files, or rain/ and clean/ folders)")
    return [(image, None) for image in images]


def _summary(values: list[float]) -> dict[str, float]:
    return {"min": float(np.min(values)), "mean": float(np.mean(values))}


def run_parity(reference: Runner, candidate: Runner, images: list[tuple[Path, Path | None]],
               gates: ParityGates = ParityGates(), progress: bool = False) -> dict[str, Any]:
    """Run both backends on every image and return the parity result (with `passed`)."""
    y = gates.test_y_channel
    per_image = []
    iterator = images
    if progress:
        from tqdm import tqdm
        iterator = tqdm(images, desc="parity", unit="img")
    for rainy_path, clean_path in iterator:
        rainy = read_image(rainy_path)
        reference_out = np.clip(from_batch(reference.infer(to_batch(rainy))), 0, 1)
        candidate_out = np.clip(from_batch(candidate.infer(to_batch(rainy))), 0, 1)
        if not np.isfinite(candidate_out).all():
            raise TreefuseError(f"{candidate.spec} produced NaN or Inf on {rainy_path}")
        row: dict[str, Any] = {"image": str(rainy_path),
                               "output_psnr_db": calculate_psnr(candidate_out, reference_out, test_y_channel=y)}
        if clean_path is not None:
            clean = read_image(clean_path)
            row["ref_psnr_db"] = calculate_psnr(reference_out, clean, test_y_channel=y)
            row["cand_psnr_db"] = calculate_psnr(candidate_out, clean, test_y_channel=y)
        per_image.append(row)
    return judge(per_image, gates)


def judge(per_image: list[dict[str, Any]], gates: ParityGates) -> dict[str, Any]:
    """Summarise per-image rows and apply the gates; re-runnable on saved rows."""
    output_psnr = _summary([r["output_psnr_db"] for r in per_image])
    failures = []
    if output_psnr["min"] < gates.min_output_psnr_db:
        failures.append(f"output PSNR min {output_psnr['min']:.2f} dB < {gates.min_output_psnr_db} dB")
    result: dict[str, Any] = {"output_psnr_db": output_psnr, "images": per_image,
                              "gates": {"min_output_psnr_db": gates.min_output_psnr_db,
                                        "max_task_drop_db": gates.max_task_drop_db},
                              "metric": {**METRIC_CONVENTION, "channel": "Y" if gates.test_y_channel else "RGB"}}
    if all("ref_psnr_db" in r for r in per_image):
        ref = float(np.mean([r["ref_psnr_db"] for r in per_image]))
        cand = float(np.mean([r["cand_psnr_db"] for r in per_image]))
        result["task"] = {"ref_psnr_db": ref, "cand_psnr_db": cand, "delta_db": cand - ref}
        if ref - cand > gates.max_task_drop_db:
            failures.append(f"task PSNR drop {ref - cand:.3f} dB > {gates.max_task_drop_db} dB")
    result["passed"] = not failures
    result["failures"] = failures
    return result
