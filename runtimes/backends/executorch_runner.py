"""ExecuTorch runner: a .pte program on ExecuTorch's own runtime (XNNPACK delegate) on this CPU."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from treefuse.errors import TreefuseError, one_line
from treefuse.optional import import_optional
from treefuse.quiet import held_stderr
from treefuse.runtimes.backends.base import Runner
from treefuse.sidecar import read_sidecar

# ExecuTorch's runtime reports a program or input it cannot handle as a RuntimeError ("Failed to load
# program, error: 0x23", "set_inputs() ... failed"); anything else is not the program's fault.
EXECUTORCH_ERRORS = (RuntimeError,)


def import_runtime() -> Any:
    return import_optional("executorch.runtime", "executorch: ExecuTorch", "executorch")


def _check_identifier(path: Path) -> None:
    """Refuse a file without a .pte's "ETnn" identifier: the runtime's own log of it aborts the process."""
    with open(path, "rb") as handle:
        identifier = handle.read(8)[4:]
    if len(identifier) != 4 or identifier[:2] != b"ET" or not identifier[2:].isdigit():
        raise TreefuseError(f"executorch: cannot load {path}: not an ExecuTorch program (no .pte identifier); "
                            "export one with `treefuse export executorch`")


class ExecuTorchRunner(Runner):
    """Runs the `forward` method of a .pte; a batch runs image by image (the program's batch is 1)."""

    kind = "executorch"

    def __init__(self, path, threads: int | None = None) -> None:
        super().__init__(path)
        self.threads = threads
        self.method: Any = None
        self.sidecar: dict[str, Any] = {}
        self.max_hw: tuple[int, int] | None = None

    def activate_impl(self) -> None:
        runtime = import_runtime()
        self.sidecar = read_sidecar(self.path) or {}
        if self.threads:
            # imported quietly: its pybindings warn "This API is experimental" on import, noise to a user
            portable_lib = import_optional("executorch.extension.pybindings.portable_lib", "executorch: ExecuTorch",
                                           "executorch")
            with held_stderr():  # the C++ side logs "Resetting threadpool to N threads." each time
                portable_lib._unsafe_reset_threadpool(self.threads)  # the runtime's one shared pool
        _check_identifier(self.path)
        try:
            with held_stderr(EXECUTORCH_ERRORS):  # a load logs cpuinfo probes and the loader's complaints line by line
                self.method = runtime.Runtime.get().load_program(str(self.path)).load_method("forward")
        except EXECUTORCH_ERRORS as exc:
            raise TreefuseError(f"executorch: cannot load {self.path} ({one_line(exc)[:200]}); "
                                "is it a .pte from `treefuse export executorch`?") from None
        if self.method is None:
            raise TreefuseError(f"executorch: {self.path} has no 'forward' method; export it with treefuse")
        self.max_hw = self._max_hw(self.method.metadata)

    def _max_hw(self, meta: Any) -> tuple[int, int]:
        """The program's largest H x W; refuses anything but one 1x3xHxW float input and output."""
        sizes = list(meta.input_tensor_meta(0).sizes()) if meta.num_inputs() == 1 else []
        if meta.num_outputs() != 1 or len(sizes) != 4 or sizes[:2] != [1, 3] \
                or list(meta.output_tensor_meta(0).sizes()) != sizes:
            raise TreefuseError(f"executorch: {self.path} is not a treefuse deraining program (needs one 1x3xHxW "
                                f"input and output, has {meta.num_inputs()} input(s) {sizes}); "
                                "export one with `treefuse export executorch`")
        return int(sizes[2]), int(sizes[3])

    def input_constraints(self) -> dict[str, Any]:
        # The program holds its upper bound (memory is planned for it); the lower bound is in the sidecar.
        if not self.max_hw:
            return {}
        return {"min_hw": tuple(self.sidecar.get("provenance", {}).get("min_hw", (1, 1))), "max_hw": self.max_hw}

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        import torch

        try:
            outputs = [self.method.execute([torch.from_numpy(np.require(image[None], requirements="CW"))])[0].numpy()
                       for image in batch]
        except EXECUTORCH_ERRORS as exc:  # this program cannot run this input
            raise TreefuseError(f"executorch: {self.path} failed on a {'x'.join(map(str, batch.shape))} input "
                                f"({one_line(exc)[:200]})") from None
        return np.concatenate(outputs, axis=0)

    def deactivate_impl(self) -> None:
        self.method = None

    def read_metadata_impl(self) -> dict[str, str]:
        return (read_sidecar(self.path) or {}).get("metadata", {})

    def describe_impl(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"backend": f"ExecuTorch {version('executorch')} (XNNPACK)", "max_hw": list(self.max_hw or ())}
