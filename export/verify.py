"""Export checks its own output with the same gates and the same parity code that `treefuse parity` uses,
so whatever export approves, parity with the defaults passes."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from treefuse.errors import GateFailed
from treefuse.gates import Gates
from treefuse.runtimes.measurements.parity import ParityGates, Sample, parity_over

QAT_HINT = ("fine-tune for INT8 with `treefuse qat --data PAIRS --out RUN`, then `treefuse export onnx "
            "--precision int8 --qat RUN` (on CPUs without VNNI its 7-bit weights also avoid ORT's int16 saturation)")


def samples_from_batches(rainy: Iterable[np.ndarray], clean: Iterable[np.ndarray | None] | None = None,
                         name: str = "image") -> list[Sample]:
    """Samples from Nx3xHxW batches (a calibration set, or a paired set's inputs and targets)."""
    rainy_images = [image.transpose(1, 2, 0) for batch in rainy for image in batch]
    clean_images = [None] * len(rainy_images) if clean is None else \
        [image.transpose(1, 2, 0) for batch in clean for image in batch]
    return [(f"{name} {i}", r, c) for i, (r, c) in enumerate(zip(rainy_images, clean_images))]


def verify_onnx_export(fp32_path: Path, candidate_path: Path, samples: list[Sample], gates: Gates,
                       what: str) -> dict[str, Any]:
    """Parity of `candidate_path` against the FP32 model on `samples`; GateFailed (exit 1) when it misses `gates`."""
    from treefuse.runtimes.backends.onnx_runner import OnnxRuntimeRunner

    with OnnxRuntimeRunner(fp32_path) as reference, OnnxRuntimeRunner(candidate_path) as candidate:
        result = parity_over(reference, candidate, samples, ParityGates(gates))
    verdict = {"passed": result["passed"], "failures": result["failures"], "gates": result["gates"],
               "output_psnr_db": result["output_psnr_db"], "task": result.get("task"), "verified_on": what,
               "image_count": len(samples)}
    if not result["passed"]:
        raise GateFailed(f"the {gates.precision} export misses its gates on {what}: {'; '.join(result['failures'])}; "
                         f"nothing was written: {QAT_HINT}")
    return verdict
