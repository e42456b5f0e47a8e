"""ONNX Runtime runner (CPU by default; CUDA when asked and installed)."""
from __future__ import annotations

from typing import Any

import numpy as np

from treefuse.artifact import read_onnx_metadata
from treefuse.errors import TreefuseError, one_line
from treefuse.quiet import held_stderr
from treefuse.runtimes.backends.base import Runner


def ort_errors() -> tuple[type[Exception], ...]:
    """ONNX Runtime's own exception classes (Fail, InvalidArgument, InvalidGraph, NoSuchFile, ...): the model's fault.

    Anything else (a MemoryError, a bug in treefuse) propagates and is reported as one."""
    from onnxruntime.capi import onnxruntime_pybind11_state as state

    return tuple(value for value in vars(state).values() if isinstance(value, type) and issubclass(value, Exception))


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX model in an ONNX Runtime session with full graph optimisation."""

    kind = "onnx"

    def __init__(self, path, threads: int | None = None, providers: list[str] | str | None = None) -> None:
        super().__init__(path)
        self.threads = threads
        # A spec option gives one string: 'providers=CUDAExecutionProvider+CPUExecutionProvider'.
        self.providers = providers.split("+") if isinstance(providers, str) else providers or ["CPUExecutionProvider"]
        self.session = None

    def activate_impl(self) -> None:
        import onnxruntime as ort

        missing = [p for p in self.providers if p not in ort.get_available_providers()]
        if missing:
            raise TreefuseError(f"onnx: execution provider(s) {missing} not available in this ONNX Runtime "
                                f"(has {ort.get_available_providers()}); for CUDA install onnxruntime-gpu")

        try:
            with held_stderr(ort_errors()):
                self.session = ort.InferenceSession(str(self.path), self.session_options(), providers=self.providers)
        except (*ort_errors(), UnicodeDecodeError) as exc:  # ORT cannot even decode a damaged model's strings
            first = one_line(exc)
            raise TreefuseError(f"onnx: cannot load {self.path} ({first[:200]})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise TreefuseError(f"onnx: {self.path} must have one 4-D image input, found {[i.shape for i in inputs]}")
        channels = inputs[0].shape[1]
        if isinstance(channels, int) and channels != 3:
            raise TreefuseError(f"onnx: {self.path} takes {channels}-channel input, not RGB (N x 3 x H x W); "
                                "export a treefuse model with `treefuse export onnx`")
        if inputs[0].type not in ("tensor(float)", "tensor(float16)"):
            raise TreefuseError(f"onnx: {self.path} takes {inputs[0].type} input; treefuse feeds float32 images")
        self.input_name = inputs[0].name
        self.input_is_fp16 = inputs[0].type == "tensor(float16)"

    def session_options(self) -> Any:
        """The session options every session of this runner uses (the layer capture and the profiler too)."""
        import onnxruntime as ort

        from treefuse.formats import format_of, resolve

        # One setup for a device bundle and for this runner: the ONNX row's bundle engine holds it. ORT's own
        # ERROR log stays off here: a failing run is reported by its exception, one line.
        return resolve(format_of("onnx").bundle_engine + ":session_options")(ort, self.threads, log_severity=4)

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        feed = batch.astype(np.float16) if self.input_is_fp16 else batch
        try:
            return self.session.run(None, {self.input_name: feed})[0]
        except ort_errors() as exc:  # the model cannot run this input (bad shape, bad graph)
            raise TreefuseError(f"onnx: {self.path} failed on a {'x'.join(map(str, batch.shape))} input "
                                f"({one_line(exc)[:200]})") from None

    def deactivate_impl(self) -> None:
        self.session = None

    def read_metadata_impl(self) -> dict[str, str]:
        return read_onnx_metadata(self.path)

    def describe_impl(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"backend": f"ONNX Runtime {ort.__version__}", "providers": self.providers}
