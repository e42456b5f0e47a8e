"""TensorRT runner over a serialized engine, through Polygraphy's TrtRunner (needs a GPU)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from treefuse.errors import TreefuseError, one_line
from treefuse.quiet import held_stderr
from treefuse.runtimes.backends.base import Runner
from treefuse.sidecar import read_sidecar

INPUT_NAME = "input"
MISSING_TENSORRT = "trt: TensorRT is not installed (it needs an NVIDIA GPU): pip install 'treefuse[tensorrt]'"


def _import_backend() -> SimpleNamespace:
    """Polygraphy's TensorRT backend (`pg`) and its one error type; the one place the runner imports TensorRT."""
    try:
        import tensorrt  # noqa: F401  (Polygraphy imports it lazily; fail here, clearly)
        from polygraphy.backend import trt as polygraphy_trt
        from polygraphy.exception import PolygraphyException
    except ImportError:
        raise TreefuseError(MISSING_TENSORRT) from None
    return SimpleNamespace(pg=polygraphy_trt, error=PolygraphyException)


class TensorRTRunner(Runner):
    """Runs an engine built by `treefuse export trt`; shapes outside its profile are refused."""

    kind = "trt"

    def __init__(self, path, profile_index: int = 0, threads: int | None = None) -> None:
        # `threads` is accepted like every runner's, and unused: TensorRT runs on the GPU.
        super().__init__(path)
        self.profile_index = profile_index
        self.profile: dict[str, tuple[int, ...]] | None = None
        self.runner = None

    def activate_impl(self) -> None:
        backend = _import_backend()
        pg = backend.pg
        try:
            with held_stderr((backend.error,)):  # TensorRT's own log of why, then Polygraphy's CRITICAL line
                engine = pg.EngineFromBytes(self.path.read_bytes())()
        except backend.error as exc:  # Polygraphy raises this (never returns None) when TensorRT cannot deserialize
            raise TreefuseError(f"trt: {self.path} is not an engine this TensorRT can load ({one_line(exc)[:120]}); "
                                "rebuild it here with `treefuse export trt`") from None
        low, opt, high = engine.get_tensor_profile_shape(INPUT_NAME, self.profile_index)
        self.profile = {"min": tuple(low), "opt": tuple(opt), "max": tuple(high)}
        self.runner = pg.TrtRunner(engine, optimization_profile=self.profile_index)
        self.runner.activate()

    def input_constraints(self) -> dict[str, Any]:
        if self.profile is None:
            return {}
        return {"min_hw": self.profile["min"][2:], "max_hw": self.profile["max"][2:]}

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        low, high = self.profile["min"][0], self.profile["max"][0]
        if not low <= batch.shape[0] <= high:
            raise TreefuseError(f"trt: batch {batch.shape[0]} is outside the engine's profile {low}..{high}; "
                                "rebuild with a wider --min-shape/--max-shape")
        outputs = self.runner.infer({INPUT_NAME: np.ascontiguousarray(batch)})
        return np.array(outputs["output"], dtype=np.float32)

    def deactivate_impl(self) -> None:
        if self.runner is not None:
            self.runner.deactivate()
        self.runner = None

    def _sidecar(self) -> dict[str, Any]:
        """The engine's sidecar (`treefuse export trt`), refused when it describes other bytes than the engine."""
        return read_sidecar(self.path) or {}

    def read_metadata_impl(self) -> dict[str, str]:
        return self._sidecar().get("metadata", {})

    def describe_impl(self) -> dict[str, Any]:
        record = self._sidecar().get("provenance", {})
        return {"backend": "TensorRT", **{key: record.get(key) for key in ("tensorrt_version", "gpu", "onnx_sha256",
                                                                            "profile") if key in record}}
