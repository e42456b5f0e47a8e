"""Core ML runner: Core ML `predict` on macOS, treefuse's MIL evaluator of the saved package elsewhere."""
from __future__ import annotations

import platform
from typing import Any

import numpy as np
import torch

from treefuse.errors import TreefuseError
from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.backends.coreml_mil import PackageProgram, check_supported, evaluate, load_program

EVALUATORS = ("auto", "coreml", "mil")
COMPUTE_UNITS = ("ALL", "CPU_ONLY", "CPU_AND_GPU", "CPU_AND_NE")


class CoreMLRunner(Runner):
    """Runs an .mlpackage; `evaluator` is "auto" (predict on macOS, MIL evaluator elsewhere), "coreml" or "mil"."""

    kind = "coreml"

    def __init__(self, path, evaluator: str = "auto", compute_units: str = "ALL", threads: int | None = None) -> None:
        super().__init__(path)
        self.threads = threads
        if evaluator not in EVALUATORS:
            raise TreefuseError(f"coreml: evaluator must be one of {EVALUATORS}, got {evaluator!r}")
        on_mac = platform.system() == "Darwin"
        self.evaluator = ("coreml" if on_mac else "mil") if evaluator == "auto" else evaluator
        if self.evaluator == "coreml" and not on_mac:
            raise TreefuseError("coreml: Core ML predict runs only on macOS; use the MIL evaluator (evaluator='mil')")
        if compute_units not in COMPUTE_UNITS:
            raise TreefuseError(f"coreml: compute_units must be one of {COMPUTE_UNITS}, got {compute_units!r}")
        self.compute_units = compute_units
        self.package: PackageProgram | None = None
        self.mlmodel: Any = None

    def activate_impl(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.package = load_program(self.path)
        if self.evaluator == "mil":
            check_supported(self.package)
        else:
            import coremltools as ct

            self.mlmodel = ct.models.MLModel(str(self.path), compute_units=getattr(ct.ComputeUnit, self.compute_units))

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return np.concatenate([self._infer_one(batch[i:i + 1]) for i in range(batch.shape[0])])

    def _infer_one(self, image: np.ndarray) -> np.ndarray:
        if self.evaluator == "mil":
            return evaluate(self.package, image)
        # Core ML takes an FP16 program's input as float16.
        dtype = np.float16 if self.package.precision() == "fp16" else np.float32
        outputs = self.mlmodel.predict({self.package.input_name: image.astype(dtype)})
        return np.asarray(outputs[self.package.output_name], dtype=np.float32)

    def deactivate_impl(self) -> None:
        self.package = None
        self.mlmodel = None

    def input_constraints(self) -> dict[str, Any]:
        package = self.package if self.package is not None else load_program(self.path)
        limits = package.flexible_hw()
        return {} if limits is None else {"min_hw": limits[0], "max_hw": limits[1]}

    def describe_impl(self) -> dict[str, Any]:
        package = self.package if self.package is not None else load_program(self.path)
        metadata = package.metadata()
        backend = (f"treefuse MIL evaluator on {platform.system()} (reads the package's program and weight.bin)"
                   if self.evaluator == "mil" else f"Core ML predict ({self.compute_units} compute units)")
        # Timings through treefuse's evaluator say nothing of Core ML's speed on Apple hardware.
        return {"backend": backend, "evaluator": self.evaluator, "compute_dtype": package.precision(),
                "timing": "evaluator" if self.evaluator == "mil" else "device",
                "deployment_target": metadata.get("treefuse.deployment_target")}

    def read_metadata_impl(self) -> dict[str, str]:
        package = self.package if self.package is not None else load_program(self.path)
        return {"treefuse.precision": package.precision(), **package.metadata()}
