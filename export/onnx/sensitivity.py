"""Per-layer INT8 sensitivity on the task metric, and the search for layers to keep in float.

A layer's sensitivity is how much task PSNR (derained output vs clean, on a paired set)
comes back when only that layer stays in float while every other layer is INT8. Layers
are then kept in float, most sensitive first, until the model passes the int8 gates that
export's own final check applies (treefuse/gates.py, judged by parity's code): the mean
task-PSNR drop and the drop on the worst single image, so whatever the search accepts, the
final check passes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from treefuse.errors import GateFailed
from treefuse.gates import Gates, gates_text
from treefuse.images import paired_images, read_image, to_batch
from treefuse.progress import progress_bar

Verdict = dict[str, Any]  # a parity verdict (treefuse.portable.quality.judge_rows): passed, failures, task, worst_image
Evaluate = Callable[[Sequence[str]], Verdict]  # float layers -> that INT8 model's verdict against FP32


@dataclass(frozen=True)
class PairedSet:
    """Rainy inputs and clean targets as 1x3xHxW batches, optionally centre-cropped to at most `crop`."""

    rainy: list[np.ndarray]
    clean: list[np.ndarray]
    source: str
    names: tuple[str, ...] = ()  # each pair's rain file, as parity names it
    folder: Path | None = None  # the paired folder they came from


def load_paired_set(folder: str | Path, max_pairs: int | None = None, crop: int | None = None) -> PairedSet:
    """The pairs of a paired folder (rain/ + clean/), or its first `max_pairs`."""
    pairs = paired_images(folder)[:max_pairs]
    rainy, clean = [], []
    for rainy_path, clean_path in pairs:
        rainy.append(to_batch(_centre_crop(read_image(rainy_path), crop)))
        clean.append(to_batch(_centre_crop(read_image(clean_path), crop)))
    view = f"centre {crop}x{crop} crops" if crop else "full images"
    return PairedSet(rainy, clean, f"{folder} ({len(pairs)} pairs, {view})", tuple(str(r) for r, _ in pairs),
                     Path(folder))


def judged_samples(paired: PairedSet | None, calibration: Any) -> tuple[list[Any], str]:
    """What an ONNX INT8 check judges: the paired set (task PSNR too), else the calibration crops; and their words."""
    from treefuse.export.verify import samples_from_batches

    if paired is not None:
        return samples_from_batches(paired.rainy, paired.clean, paired.names), paired.source
    return (samples_from_batches(calibration.batches(8), names=calibration.image_names()),
            "the calibration set (inputs only: no task PSNR)")


def _centre_crop(image: np.ndarray, crop: int | None) -> np.ndarray:
    if crop is None:
        return image
    height, width = image.shape[:2]
    top, left = max(0, (height - crop) // 2), max(0, (width - crop) // 2)
    return image[top:top + crop, left:left + crop]


class PairedJudge:
    """Judges ONNX models against an FP32 model on a paired set as export's final check does; FP32 runs once."""

    def __init__(self, fp32_path: str | Path, paired: PairedSet, gates: Gates) -> None:
        from treefuse.export.verify import samples_from_batches
        from treefuse.portable.quality import psnr

        self.gates = gates
        self.samples = samples_from_batches(paired.rainy, paired.clean, paired.names)  # as the final check names them
        self.reference_outputs = self._outputs(fp32_path)
        self.fp32_psnr_db = float(np.mean([psnr(np.clip(output, 0, 1), clean) for output, (_, _, clean)
                                           in zip(self.reference_outputs, self.samples)]))

    def __call__(self, model_path: str | Path) -> Verdict:
        from treefuse.portable.quality import parity_row
        from treefuse.runtimes.measurements.parity import ParityGates, judge

        rows = [parity_row(name, output, reference_output, clean) for (name, _, clean), output, reference_output
                in zip(self.samples, self._outputs(model_path), self.reference_outputs)]
        return judge(rows, ParityGates(self.gates))

    def _outputs(self, model_path: str | Path) -> list[np.ndarray]:
        from treefuse.images import from_batch
        from treefuse.runtimes.backends.registry import make_runner

        with make_runner(f"onnx:{model_path}") as runner:
            return [from_batch(runner.infer(to_batch(rainy))) for _, rainy, _ in self.samples]


def task_psnr_db(verdict: Verdict) -> float:
    """The candidate's mean task PSNR in a verdict (-inf when no output was finite)."""
    return verdict["task"]["cand_psnr_db"] if verdict.get("task") else float("-inf")


def worst_drop_db(verdict: Verdict) -> float:
    """The largest task-PSNR drop on a single image in a verdict (inf when no output was finite)."""
    worst = verdict.get("worst_image")
    return 0.0 - worst["task_delta_db"] if worst and "task_delta_db" in worst else float("inf")  # no "-0.000"


def layer_sensitivity(layers: Sequence[str], evaluate: Evaluate, all_int8: Verdict,
                      progress: bool = False) -> list[dict[str, Any]]:
    """Task PSNR with only each layer in float, and what that recovers over the all-INT8 model."""
    layers = progress_bar(layers, progress, desc="sensitivity", unit="layer")
    table = []
    for layer in layers:
        verdict = evaluate([layer])
        table.append({"layer": layer, "psnr_db_only_this_float": task_psnr_db(verdict),
                      "recovered_db": task_psnr_db(verdict) - task_psnr_db(all_int8),
                      "worst_drop_db_only_this_float": worst_drop_db(verdict)})
    return sorted(table, key=lambda row: -row["recovered_db"])


@dataclass
class BudgetSearch:
    """The outcome: which layers stay float, the drops reached (mean and worst image), and each step taken."""

    fp32_psnr: float
    float_layers: list[str] = field(default_factory=list)
    drop_db: float = float("inf")
    worst_drop_db: float = float("inf")
    steps: list[dict[str, Any]] = field(default_factory=list)


def keep_until_gates_pass(fp32_psnr: float, all_int8: Verdict, table: list[dict[str, Any]], evaluate: Evaluate,
                          max_float_layers: int | None = None, advice: str = "") -> BudgetSearch:
    """Keep the most sensitive layers in float, one at a time, until the verdict passes (mean and worst image)."""
    search, verdict = BudgetSearch(fp32_psnr), all_int8
    search.steps.append(_record(search, verdict))
    limit = len(table) if max_float_layers is None else min(max_float_layers, len(table))
    for row in table[:limit]:
        if verdict["passed"]:
            break
        search.float_layers.append(row["layer"])
        verdict = evaluate(search.float_layers)
        search.steps.append({**_record(search, verdict), "added": row["layer"],
                             "recovered_alone_db": row["recovered_db"]})
    if not verdict["passed"]:
        best = min(search.steps, key=lambda step: (len(step["failures"]), step["drop_db"]))
        raise GateFailed(
            f"INT8 cannot meet its gates ({gates_text(verdict['gates'])}) on the paired images: the best found was "
            f"{best['drop_db']:.3f} dB mean, {best['worst_drop_db']:.3f} dB on the worst image, with "
            f"{len(best['float_layers'])} of {len(table)} layers in float ({'; '.join(best['failures'])}); "
            "nothing was written: raise --max-task-drop/--max-worst-task-drop, try another --calib-method or a "
            "calibration set closer to the camera's images" + (f"; or {advice}" if advice else ""))
    return search


def _record(search: BudgetSearch, verdict: Verdict) -> dict[str, Any]:
    """Set the search's drops from a verdict; returns the step for its log."""
    search.drop_db, search.worst_drop_db = search.fp32_psnr - task_psnr_db(verdict), worst_drop_db(verdict)
    return {"float_layers": list(search.float_layers), "psnr_db": task_psnr_db(verdict), "drop_db": search.drop_db,
            "worst_drop_db": search.worst_drop_db, "worst_image": (verdict.get("worst_image") or {}).get("image"),
            "passed": verdict["passed"], "failures": list(verdict["failures"])}
