"""Every export checks itself: the staged artifact runs through its own runner against its source on
real images and is judged by its precision's gates (treefuse/gates.py) before it is moved into place,
with the same parity code `treefuse parity` uses, so whatever export approves, parity passes.

The images are the paired images when given (then the task PSNR is judged too), else the first
images of the calibration set, else two images made here (float precisions need no data).
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from treefuse.errors import GateFailed, TreefuseError
from treefuse.gates import Gates, gates_for
from treefuse.runtimes.measurements.parity import ParityGates, Sample, parity_over

MAX_CALIBRATION_SAMPLES = 4  # a calibration set holds up to hundreds of crops: a few judge a broken export
SELF_MADE_HW = (64, 64)
# The verdicts of the checks run inside `recorded_checks()`: a missed check's figures, for a caller that
# measures misses too (benchmarks/rknn_measure.py); GateFailed carries only its message.
_RECORDED: ContextVar[list[dict[str, Any]] | None] = ContextVar("treefuse_export_checks", default=None)


@contextlib.contextmanager
def recorded_checks() -> Iterator[list[dict[str, Any]]]:
    """Collect the verdict of every export check run inside the block (the last is the artifact's own)."""
    checks: list[dict[str, Any]] = []
    token = _RECORDED.set(checks)
    try:
        yield checks
    finally:
        _RECORDED.reset(token)


def check_figures(verdict: dict[str, Any]) -> str:
    """One line of what an export's own check measured, each figure beside its gate."""
    gates, output = verdict["gates"], verdict.get("output_psnr_db") or {}
    line = (f"checked on {verdict['verified_on']}: min output PSNR {output.get('min', float('nan')):.1f} dB vs "
            f"{verdict.get('reference', 'its source')} (gate >= {gates['min_output_psnr_db']:g})")
    task, worst = verdict.get("task"), verdict.get("worst_image") or {}
    if task:
        line += (f"; task PSNR {task['cand_psnr_db']:.2f} dB, change {task['delta_db']:+.3f} dB mean "
                 f"(gate >= -{gates['max_task_drop_db']:g})")
        if "task_delta_db" in worst:
            bound = gates.get("max_worst_task_drop_db")
            line += f", worst image {worst['image']} {worst['task_delta_db']:+.3f} dB" + \
                (f" (gate >= -{bound:g})" if bound is not None else "")
    return line


def samples_from_batches(rainy: Iterable[np.ndarray], clean: Iterable[np.ndarray | None] | None = None,
                         names: Sequence[str] = ()) -> list[Sample]:
    """Samples from Nx3xHxW batches (a calibration set, or a paired set's inputs and targets), named by `names`.

    Every message names an image by its file (as parity does); `image N` (from 1) only where no file is known."""
    rainy_images = [image.transpose(1, 2, 0) for batch in rainy for image in batch]
    clean_images = [None] * len(rainy_images) if clean is None else \
        [image.transpose(1, 2, 0) for batch in clean for image in batch]
    labels = list(names) + [f"image {i + 1}" for i in range(len(names), len(rainy_images))]
    return [(label, r, c) for label, r, c in zip(labels, rainy_images, clean_images)]


def self_made_samples(hw: tuple[int, int] = SELF_MADE_HW) -> list[Sample]:
    """Two deterministic rainy-looking images: smooth gradients with bright slanted streaks."""
    rows, cols = np.mgrid[0:hw[0], 0:hw[1]].astype(np.float32)
    samples = []
    for index in range(2):
        rng = np.random.default_rng(index)
        base = np.stack([(rows / hw[0]) * 0.6 + 0.2, (cols / hw[1]) * 0.5 + 0.1,
                         0.5 + 0.3 * np.sin((rows + cols) / 7.0 + index)], axis=-1)
        streaks = ((rows * 0.3 + cols + rng.integers(0, 9)) % 9 < 1).astype(np.float32)[..., None] * 0.35
        samples.append((f"self-made {index}", np.clip(base + streaks, 0, 1).astype(np.float32), None))
    return samples


def check_samples(calibration: Path | None, paired_images: Path | None,
                  hw_range: tuple[tuple[int, int], tuple[int, int]] | None = None) -> tuple[list[Sample], str]:
    """The images an export is judged on, each fitted into the artifact's accepted size range, and what they are."""
    if paired_images is not None:
        from treefuse.runtimes.measurements.parity import folder_samples, image_set

        samples, what = list(folder_samples(image_set(paired_images))), f"the paired images {paired_images}"
    elif calibration is not None:
        from treefuse.calib.store import load_calibration_set

        calibration_set = load_calibration_set(calibration)
        batches = [calibration_set.images[:MAX_CALIBRATION_SAMPLES]]
        samples = samples_from_batches(batches, names=calibration_set.image_names())
        what = f"{len(samples)} images of the calibration set {calibration}"
    else:
        hw = SELF_MADE_HW if hw_range is None else tuple(
            min(max(side, low), high) for side, low, high in zip(SELF_MADE_HW, *hw_range))
        samples, what = self_made_samples(hw), "two self-made images"  # type: ignore[arg-type]
    return [_fitted(sample, hw_range) for sample in samples], what


def _fitted(sample: Sample, hw_range: tuple[tuple[int, int], tuple[int, int]] | None) -> Sample:
    """Centre-crop an image larger than the artifact's maximum; refuse one below its minimum."""
    if hw_range is None:
        return sample
    (min_h, min_w), (max_h, max_w) = hw_range
    name, rainy, clean = sample
    height, width = rainy.shape[:2]
    if height < min_h or width < min_w:
        raise TreefuseError(f"{name} is {height}x{width}, below the export's minimum {min_h}x{min_w}; "
                            "lower --min-size or judge on larger images")
    top, left = (height - min(height, max_h)) // 2, (width - min(width, max_w)) // 2
    crop = (slice(top, top + min(height, max_h)), slice(left, left + min(width, max_w)))
    return name, rainy[crop], None if clean is None else clean[crop]


def verify_export(reference_spec: str, candidate_spec: str, samples: list[Sample], gates: Gates, what: str,
                  advice: str = "", reference_words: str | None = None) -> dict[str, Any]:
    """Parity of the candidate against its reference on `samples`; GateFailed (exit 1) when it misses `gates`."""
    from treefuse.runtimes.backends.registry import make_runner

    with make_runner(reference_spec) as reference, make_runner(candidate_spec) as candidate:
        result = parity_over(reference, candidate, samples, ParityGates(gates))
    verdict = {"passed": result["passed"], "failures": result["failures"], "gates": result["gates"],
               "output_psnr_db": result["output_psnr_db"], "task": result.get("task"),
               "worst_image": result.get("worst_image"), "verified_on": what, "image_count": len(samples),
               "reference": reference_words or _reference_words(reference_spec)}
    recorded = _RECORDED.get()
    if recorded is not None:
        recorded.append(verdict)
    if not result["passed"]:
        raise GateFailed(f"the {gates.precision} export misses its gates on {what}: {'; '.join(result['failures'])}; "
                         f"nothing was written" + (f": {advice}" if advice else ""))
    return verdict


def _reference_words(spec: str) -> str:
    kind, _, path = spec.partition(":")
    return "PyTorch FP32" if kind == "torch" else f"{kind} {Path(path.split('?')[0]).name}"


def verify_staged(kind: str, staged: Path, weights: Path, precision: str, calibration: Path | None,
                  paired_images: Path | None, hw_range: tuple[tuple[int, int], tuple[int, int]] | None = None,
                  advice: str = "") -> dict[str, Any]:
    """Judge a staged artifact of `kind` against the FP32 PyTorch reference of its source weights."""
    samples, what = check_samples(calibration, paired_images, hw_range)
    return verify_export(f"torch:{weights}", f"{kind}:{staged}", samples, gates_for(precision), what, advice)


def gate_miss_advice(kind: str, precision: str, qat_target: str | None = None, paired_images: bool = False,
                     judged: Path | None = None) -> str:
    """What to try when an export of `kind` at `precision` misses its gate: the routes not yet taken, cheapest first,
    each with its recorded cost (treefuse/route_costs.py).

    `paired_images`: the user gave them, so a mixed-precision format already kept its sensitive layers float;
    `judged`: the pairs the gate judged, which QAT must not train on."""
    from treefuse import route_costs
    from treefuse.formats import format_of

    row = format_of(kind)
    if row.precision(precision).scheme is None:
        if precision != "fp32" and "fp32" in row.precision_names:
            return "export fp32 instead, or check the source weights"
        return "check the source weights and the runtime's version: a float export that misses is broken"
    routes = []
    if row.mixed_precision and not paired_images:
        routes.append("keep the most sensitive layers in float: add --paired-images PAIRS "
                      f"({route_costs.mixed_precision_text()})")
    from treefuse.qat_run import TARGETS, qat_command, target_named

    target = target_named(qat_target or row.precision(precision).scheme or kind).name
    if target == "trt-qdq":  # TensorRT builds from the QDQ ONNX model the run writes
        export = "treefuse export onnx --precision int8 --target tensorrt --qat RUN --out m.trt.onnx"
    else:
        export = f"treefuse export {kind} --precision {precision} --qat RUN --out m.{precision}{row.suffix}"
    not_judged = f"not {judged}: " if judged else ""
    routes.append(f"fine-tune for it ({route_costs.qat_text(TARGETS[target].defaults.steps)}): "
                  f"`{qat_command(target, data='TRAIN_PAIRS')}` ({not_judged}train on pairs the gate does not judge), "
                  f"then `{export}`")
    return "; or ".join(routes) + f" ({route_costs.measured_on_text()})"


def verify_onnx_export(fp32_path: Path, candidate_path: Path, samples: list[Sample], gates: Gates,
                       what: str, qat_target: str | None = None, paired_images: bool = False,
                       judged: Path | None = None) -> dict[str, Any]:
    """An ONNX INT8 candidate judged against the FP32 ONNX model it was quantized from."""
    advice = gate_miss_advice("onnx", "int8", qat_target, paired_images, judged)
    return verify_export(f"onnx:{fp32_path}", f"onnx:{candidate_path}", samples, gates, what, advice,
                         reference_words="the FP32 ONNX model")
