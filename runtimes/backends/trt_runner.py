"""TensorRT runner over a serialized engine, through Polygraphy's TrtRunner (needs a GPU)."""
from __future__ import annotations

from typing import Any

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.runtimes.backends.base import Runner
from treefuse.sidecar import read_sidecar

INPUT_NAME = "input"
MISSING_TENSORRT = "trt: TensorRT is not installed (it needs an NVIDIA GPU): pip install 'treefuse[tensorrt]'"


def _import_backend() -> Any:
    """Polygraphy's TensorRT backend; the one place the runner imports TensorRT."""
    try:
        import tensorrt  # noqa: F401  (Polygraphy imports it lazily; fail here, clearly)
        from polygraphy.backend import trt as polygraphy_trt
    except ImportError:
        raise TreefuseError(MISSING_TENSORRT) from None
    return polygraphy_trt


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
        pg = _import_backend()
        engine = pg.EngineFromBytes(self.path.read_bytes())()
        if engine is None:
            raise TreefuseError(f"trt: {self.path} is not an engine this TensorRT can load; rebuild it here")
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
