"""Parity: run a reference and a candidate backend on the same images and judge the difference.

`output_psnr_db` compares the candidate's output with the reference's (both clipped to
[0, 1]); on paired folders `task` scores each against ground truth and reports the drop.
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
from treefuse.metrics import METRIC_CONVENTION, calculate_psnr
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
        if not np.isfinite(candidate_raw).all():  # the candidate failed the finite-output gate on this image
            per_image.append({"image": name, "finite": False, "output_psnr_db": None})
            continue
        reference_out, candidate_out = np.clip(reference_raw, 0, 1), np.clip(candidate_raw, 0, 1)
        row: dict[str, Any] = {"image": name, "finite": True,
                               "output_psnr_db": calculate_psnr(candidate_out, reference_out, test_y_channel=y)}
        if clean is not None:
            row["ref_psnr_db"] = calculate_psnr(reference_out, clean, test_y_channel=y)
            row["cand_psnr_db"] = calculate_psnr(candidate_out, clean, test_y_channel=y)
        per_image.append(row)
    return judge(per_image, gates)


def judge(per_image: list[dict[str, Any]], gates: ParityGates) -> dict[str, Any]:
    """Summarise per-image rows and apply the gates; re-runnable on saved rows."""
    failures = []
    non_finite = [r["image"] for r in per_image if r.get("finite") is False]
    if non_finite and gates.gates.require_finite:
        failures.append(f"non-finite (NaN/Inf) output on {len(non_finite)} image(s), first {non_finite[0]}")
    finite_rows = [r for r in per_image if r.get("finite") is not False]
    output_psnr = _summary([r["output_psnr_db"] for r in finite_rows]) if finite_rows else None
    if output_psnr and output_psnr["min"] < gates.min_output_psnr_db:
        failures.append(f"output PSNR min {output_psnr['min']:.2f} dB < {gates.min_output_psnr_db} dB")
    result: dict[str, Any] = {"output_psnr_db": output_psnr, "images": per_image, "non_finite_images": non_finite,
                              "gates": gates.gates.to_json(),
                              "metric": {**METRIC_CONVENTION, "channel": "Y" if gates.test_y_channel else "RGB"}}
    if finite_rows and all("ref_psnr_db" in r for r in finite_rows):
        ref = float(np.mean([r["ref_psnr_db"] for r in finite_rows]))
        cand = float(np.mean([r["cand_psnr_db"] for r in finite_rows]))
        result["task"] = {"ref_psnr_db": ref, "cand_psnr_db": cand, "delta_db": cand - ref}
        if ref - cand > gates.max_task_drop_db:
            failures.append(f"task PSNR drop {ref - cand:.3f} dB > {gates.max_task_drop_db} dB")
    result["passed"] = not failures
    result["failures"] = failures
    return result
