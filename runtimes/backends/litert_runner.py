"""LiteRT runner: a .tflite on LiteRT's interpreter with its default XNNPACK delegate on this CPU.

The model is converted at one size, but every op in this network (conv, add, concat,
transpose) is size-agnostic, so the input is resized to each new H x W (and batch).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from treefuse.errors import TreefuseError, one_line
from treefuse.optional import import_optional
from treefuse.quiet import held_stderr
from treefuse.runtimes.backends.base import Runner
from treefuse.sidecar import read_sidecar


# What LiteRT's interpreter raises for a file or input it cannot handle; anything else is not the model's fault.
LITERT_ERRORS = (ValueError, RuntimeError)


def import_interpreter() -> Any:
    """LiteRT's Interpreter class, or one line naming the extra to install."""
    return import_optional("ai_edge_litert.interpreter", "litert: LiteRT", "litert").Interpreter


class LiteRTRunner(Runner):
    """Runs a .tflite with one 4-D float image input (NCHW, as litert-torch keeps PyTorch's layout)."""

    kind = "litert"

    def __init__(self, path, threads: int | None = None) -> None:
        super().__init__(path)
        self.threads = threads
        self.interpreter: Any = None
        self.shape: tuple[int, ...] | None = None

    def activate_impl(self) -> None:
        interpreter_class = import_interpreter()
        read_sidecar(self.path)  # a stale sidecar is refused before anything runs
        try:
            with held_stderr(LITERT_ERRORS):  # "INFO: Created TensorFlow Lite XNNPACK delegate" on every load
                self.interpreter = interpreter_class(model_path=str(self.path), num_threads=self.threads or None)
        except LITERT_ERRORS as exc:
            raise TreefuseError(f"litert: cannot load {self.path} ({one_line(exc)[:200]}); "
                                "is it a .tflite from `treefuse export litert`?") from None
        inputs, outputs = self.interpreter.get_input_details(), self.interpreter.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][1] != 3 \
                or inputs[0]["dtype"] != np.float32:
            found = [(list(i["shape"]), np.dtype(i["dtype"]).name) for i in inputs]
            raise TreefuseError(f"litert: {self.path} is not a treefuse deraining model (needs one float32 1x3xHxW "
                                f"input, has {found}); export one with `treefuse export litert`")
        self.input_index, self.output_index = inputs[0]["index"], outputs[0]["index"]
        self.shape = None

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        try:
            if batch.shape != self.shape:
                with held_stderr(LITERT_ERRORS):
                    self.interpreter.resize_tensor_input(self.input_index, list(batch.shape))
                    self.interpreter.allocate_tensors()
                self.shape = batch.shape
            self.interpreter.set_tensor(self.input_index, np.ascontiguousarray(batch))
            self.interpreter.invoke()
        except LITERT_ERRORS as exc:  # this model cannot run this input
            self.shape = None
            raise TreefuseError(f"litert: {self.path} failed on a {'x'.join(map(str, batch.shape))} input "
                                f"({one_line(exc)[:200]})") from None
        return self.interpreter.get_tensor(self.output_index).copy()

    def deactivate_impl(self) -> None:
        self.interpreter, self.shape = None, None

    def read_metadata_impl(self) -> dict[str, str]:
        return (read_sidecar(self.path) or {}).get("metadata", {})

    def describe_impl(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"backend": f"LiteRT {version('ai-edge-litert')} (XNNPACK)", "threads": self.threads}
