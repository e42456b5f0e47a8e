"""PSNR (RGB or BT.601 luma) and the gate verdict over per-image rows, on numpy alone."""
from __future__ import annotations

from typing import Any

import numpy as np

Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64) / 255.0
METRIC_CONVENTION = {
    "range": "[0, 1], outputs clipped before scoring",
    "psnr_rgb": "over all RGB channels",
    "psnr_y": "ITU-R BT.601 luma (Y in [16,235]/255), BasicSR convention",
    "ssim": "Gaussian window 11x11 sigma 1.5, valid positions, mean over channels",
    "crop_border": 0,
}


def rgb_to_y(image: np.ndarray) -> np.ndarray:
    """HxWx3 RGB in [0, 1] -> HxWx1 BT.601 luma in [0, 1]."""
    return (image.astype(np.float64) @ Y_WEIGHTS + 16.0 / 255.0)[..., None]


def prepare(img: np.ndarray, img2: np.ndarray, crop_border: int = 0,
            test_y_channel: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Both images clipped to [0, 1] in float64, as luma if asked, borders trimmed (shapes must match)."""
    img, img2 = np.clip(img, 0, 1).astype(np.float64), np.clip(img2, 0, 1).astype(np.float64)
    if test_y_channel:
        img, img2 = rgb_to_y(img), rgb_to_y(img2)
    if crop_border:
        img = img[crop_border:-crop_border, crop_border:-crop_border]
        img2 = img2[crop_border:-crop_border, crop_border:-crop_border]
    return img, img2


def psnr(img: np.ndarray, img2: np.ndarray, crop_border: int = 0, test_y_channel: bool = False) -> float:
    """PSNR in dB between two same-shape HxWxC images in [0, 1]; inf when identical."""
    img, img2 = prepare(img, img2, crop_border, test_y_channel)
    mse = float(np.mean((img - img2) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(1.0 / mse))


def _summary(values: list[float]) -> dict[str, float]:
    return {"min": float(np.min(values)), "mean": float(np.mean(values))}


def judge_rows(per_image: list[dict[str, Any]], gates: dict[str, Any], test_y_channel: bool = False) -> dict[str, Any]:
    """Summarise per-image parity rows and apply `gates` (treefuse.gates.Gates as JSON): the verdict fields.

    Gates written before the worst-image bound existed (no `max_worst_task_drop_db`) judge the mean alone.
    """
    failures = []
    non_finite = [r["image"] for r in per_image if r.get("finite") is False]
    if non_finite and gates.get("require_finite", True):
        failures.append(f"non-finite (NaN/Inf) output on {len(non_finite)} image(s), first {non_finite[0]}")
    finite_rows = [r for r in per_image if r.get("finite") is not False]
    output_psnr = _summary([r["output_psnr_db"] for r in finite_rows]) if finite_rows else None
    if output_psnr and output_psnr["min"] < gates["min_output_psnr_db"]:
        lowest = min(finite_rows, key=lambda r: r["output_psnr_db"])
        failures.append(f"output PSNR min {output_psnr['min']:.2f} dB < {gates['min_output_psnr_db']} dB"
                        + (f" (image {lowest['image']})" if "image" in lowest else ""))
    result: dict[str, Any] = {"output_psnr_db": output_psnr, "images": per_image, "non_finite_images": non_finite,
                              "gates": dict(gates), "metric": {**METRIC_CONVENTION,
                                                               "channel": "Y" if test_y_channel else "RGB"}}
    worst = worst_image(finite_rows)
    if worst is not None:
        result["worst_image"] = worst
    if finite_rows and all("ref_psnr_db" in r for r in finite_rows):
        ref = float(np.mean([r["ref_psnr_db"] for r in finite_rows]))
        cand = float(np.mean([r["cand_psnr_db"] for r in finite_rows]))
        result["task"] = {"ref_psnr_db": ref, "cand_psnr_db": cand, "delta_db": cand - ref}
        if ref - cand > gates["max_task_drop_db"]:
            failures.append(f"task PSNR drop {ref - cand:.3f} dB > {gates['max_task_drop_db']} dB")
        bound = gates.get("max_worst_task_drop_db")
        if bound is not None and worst is not None and -worst["task_delta_db"] > bound:
            failures.append(f"image {worst['image']} loses {-worst['task_delta_db']:.3f} dB of task PSNR "
                            f"> {bound:g} dB (worst image)")
    result["passed"] = not failures
    result["failures"] = failures
    return result


def worst_image(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The image a camera would show worst: the largest task-PSNR drop on paired rows, else the lowest output PSNR.

    A mean over many frames hides one bad frame; this names it, with its figures.
    """
    if not rows:
        return None
    if all("ref_psnr_db" in r for r in rows):
        row = min(rows, key=lambda r: r["cand_psnr_db"] - r["ref_psnr_db"])  # the first of equal drops
        return {"by": "task PSNR change", "image": row.get("image"), "output_psnr_db": row["output_psnr_db"],
                "ref_psnr_db": row["ref_psnr_db"], "cand_psnr_db": row["cand_psnr_db"],
                "task_delta_db": row["cand_psnr_db"] - row["ref_psnr_db"]}
    row = min(rows, key=lambda r: r["output_psnr_db"])
    return {"by": "output PSNR", "image": row.get("image"), "output_psnr_db": row["output_psnr_db"]}


def parity_row(name: str, candidate_raw: np.ndarray, reference_raw: np.ndarray, clean: np.ndarray | None,
               test_y_channel: bool = False) -> dict[str, Any]:
    """One image's parity row: finite or not, output PSNR vs the reference, task PSNR of both vs ground truth."""
    if not np.isfinite(candidate_raw).all():  # the candidate failed the finite-output gate on this image
        return {"image": name, "finite": False, "output_psnr_db": None}
    reference_out, candidate_out = np.clip(reference_raw, 0, 1), np.clip(candidate_raw, 0, 1)
    row: dict[str, Any] = {"image": name, "finite": True,
                           "output_psnr_db": psnr(candidate_out, reference_out, test_y_channel=test_y_channel)}
    if clean is not None:
        row["ref_psnr_db"] = psnr(reference_out, clean, test_y_channel=test_y_channel)
        row["cand_psnr_db"] = psnr(candidate_out, clean, test_y_channel=test_y_channel)
    return row
