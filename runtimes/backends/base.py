"""The one interface every backend implements (Polygraphy's shape).

Public `activate / infer / deactivate` check state and validate inputs; a backend
fills in only the `*_impl` hooks. Parity, bench and evaluate see nothing else, so a
new backend plugs in without touching them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from treefuse.artifact import ArtifactRecord
from treefuse.errors import TreefuseError
from treefuse.files import sha256_file


class Runner:
    """Runs one artifact on one backend: NCHW float32 RGB in [0, 1] in, derained NCHW out."""

    kind: str = "base"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.spec = f"{self.kind}:{self.path}"
        self.is_active = False

    # -- hooks a backend fills in -------------------------------------------------
    def activate_impl(self) -> None:
        raise NotImplementedError

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def deactivate_impl(self) -> None:
        """Release what activate_impl acquired."""

    def describe_impl(self) -> dict[str, Any]:
        """Backend-specific facts for result files (precision, provider, versions)."""
        return {}

    def read_metadata_impl(self) -> dict[str, str]:
        """The artifact's own flat `treefuse.*` metadata (embedded, or from its sidecar)."""
        return {}

    def input_constraints(self) -> dict[str, Any]:
        """Shape limits the artifact imposes, e.g. {"min_hw": (h, w), "max_hw": (h, w)}."""
        return {}

    # -- the public interface ------------------------------------------------------
    def activate(self) -> "Runner":
        if self.is_active:
            return self
        if not self.path.exists():
            raise TreefuseError(f"{self.kind}: artifact not found: {self.path}")
        self.activate_impl()
        self.is_active = True
        return self

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Derain a batch; the array must be 1..N x 3 x H x W float32."""
        if not self.is_active:
            raise RuntimeError(f"{self.kind} runner used before activate()")
        self._validate(batch)
        output = np.asarray(self.infer_impl(batch), dtype=np.float32)
        if output.shape != batch.shape:  # not a deraining model: nothing downstream may use it
            raise TreefuseError(f"{self.kind}: {self.path} turned a {'x'.join(map(str, batch.shape))} input into "
                                f"{'x'.join(map(str, output.shape))}; a deraining model keeps the input's shape")
        return output

    def deactivate(self) -> None:
        if self.is_active:
            self.deactivate_impl()
            self.is_active = False

    def artifact(self) -> ArtifactRecord:
        """The artifact's record (format, precision, model config, hashes, tool versions), same for every backend."""
        if getattr(self, "_artifact", None) is None:
            self._artifact = ArtifactRecord.from_metadata(self.read_metadata_impl(), format=self.kind, path=self.path,
                                                          sha256=sha256_file(self.path))
        return self._artifact

    def compute_precision(self) -> str:
        """The precision the outputs are computed in: what the default gates are chosen by."""
        return self.artifact().precision

    def describe(self) -> dict[str, Any]:
        """What this runner runs, for result files: kind, spec, backend facts and the artifact record."""
        artifact = self.artifact()
        return {"kind": self.kind, "spec": self.spec, "path": str(self.path), "sha256": artifact.sha256,
                "precision": self.compute_precision(), **self.describe_impl(), "artifact": artifact.to_json()}

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc: object) -> None:
        self.deactivate()

    def _validate(self, batch: np.ndarray) -> None:
        if not isinstance(batch, np.ndarray):
            raise TreefuseError(f"{self.kind}: input must be a numpy array, got {type(batch).__name__}")
        if batch.dtype != np.float32:
            raise TreefuseError(f"{self.kind}: input must be float32, got {batch.dtype}")
        if batch.ndim != 4 or batch.shape[1] != 3 or batch.shape[0] < 1:
            raise TreefuseError(f"{self.kind}: input must be Nx3xHxW, got shape {batch.shape}")
        height, width = batch.shape[2:]
        limits = self.input_constraints()
        low, high = limits.get("min_hw"), limits.get("max_hw")
        if low and (height < low[0] or width < low[1]) or high and (height > high[0] or width > high[1]):
            raise TreefuseError(
                f"{self.kind}: input {height}x{width} is outside the artifact's range {low} .. {high}; "
                "re-export with a wider shape range")
