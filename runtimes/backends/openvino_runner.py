"""OpenVINO runner for x86 camera boxes: an ONNX model (FP32, or the INT8 QDQ export) on the CPU plugin."""
from __future__ import annotations

from typing import Any

import numpy as np

from treefuse.artifact import read_onnx_metadata
from treefuse.errors import TreefuseError, one_line
from treefuse.optional import import_optional
from treefuse.quiet import held_stderr
from treefuse.runtimes.backends.base import Runner

# What the user asks for -> OpenVINO's inference precision hint for the float parts of the graph.
# An INT8 QDQ model runs its quantized convolutions in INT8 under either hint.
PRECISIONS = {"fp32": "f32", "bf16": "bf16"}


def _import_openvino() -> Any:
    return import_optional("openvino", "openvino: OpenVINO", "openvino")


def _detail(exc: RuntimeError) -> str:
    """The last line of OpenVINO's message: the lines before it are source locations and checks."""
    said = [line for line in str(exc).splitlines() if line.strip() and not line.startswith("Exception from ")]
    return (" ".join(said[-1].split()) if said else one_line(exc))[:160]


class OpenVINORunner(Runner):
    """Runs an ONNX model with OpenVINO; `precision` is the float precision hint ("fp32" or "bf16")."""

    kind = "openvino"

    def __init__(self, path, precision: str = "fp32", device: str = "CPU", threads: int | None = None) -> None:
        super().__init__(path)
        if precision not in PRECISIONS:
            raise TreefuseError(f"openvino: precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.precision, self.device, self.threads = precision, device, threads
        self.model: Any = None
        self.compiled: dict[tuple[int, ...], Any] = {}
        self.model_precision = "unknown"

    def activate_impl(self) -> None:
        ov = _import_openvino()
        self.core = ov.Core()
        if self.precision == "bf16" and "BF16" not in self._capabilities():
            raise TreefuseError(f"openvino: {self.device} has no BF16 support here; use precision=fp32")
        try:
            with held_stderr((RuntimeError,)):  # its other frontends log absl lines while they try the file
                self.model = self.core.read_model(str(self.path))
        except RuntimeError as exc:  # OpenVINO's error for a file it cannot read
            raise TreefuseError(f"openvino: cannot read {self.path} ({_detail(exc)}); "
                                "is it an ONNX model from `treefuse export onnx`?") from None
        if len(self.model.inputs) != 1:
            raise TreefuseError(f"openvino: {self.path} must have one image input, found {len(self.model.inputs)}")
        self.model_precision = self.artifact().precision

    def _capabilities(self) -> list[str]:
        return list(self.core.get_property(self.device, "OPTIMIZATION_CAPABILITIES"))

    def read_metadata_impl(self) -> dict[str, str]:
        return read_onnx_metadata(self.path)

    def compute_precision(self) -> str:
        # The model's own precision (int8) beside the one OpenVINO computes the float parts in (bf16).
        model = self.artifact().precision
        return self.precision if model in ("fp32", "unknown") else f"{model}+{self.precision}"

    def _compiled_for(self, shape: tuple[int, ...]) -> Any:
        # Static shapes compile to faster CPU kernels than a dynamic model; this net compiles in well under a second.
        if shape not in self.compiled:
            self.compiled[shape] = self.compile_for(self.model, shape)
        return self.compiled[shape]

    def compile_for(self, model: Any, shape: tuple[int, ...], **config: Any) -> Any:
        """`model` (an ov.Model of this artifact) compiled for one input shape with this runner's settings."""
        model = model.clone()
        model.reshape({model.inputs[0].get_any_name(): list(shape)})
        config = {"INFERENCE_PRECISION_HINT": PRECISIONS[self.precision], "PERFORMANCE_HINT": "LATENCY", **config}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = self.threads
        with held_stderr((RuntimeError,)):
            return self.core.compile_model(model, self.device, config)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        try:
            compiled = self._compiled_for(batch.shape)
            return compiled(batch)[compiled.outputs[0]]
        except RuntimeError as exc:  # OpenVINO's error: this model cannot be reshaped to or run on this input
            raise TreefuseError(f"openvino: {self.path} failed on a {'x'.join(map(str, batch.shape))} input "
                                f"({_detail(exc)})") from None

    def deactivate_impl(self) -> None:
        self.compiled, self.model = {}, None

    def describe_impl(self) -> dict[str, Any]:
        ov = _import_openvino()
        return {"backend": f"OpenVINO {ov.__version__}", "device": self.device,
                "model_precision": self.artifact().precision}
