"""An ExecuTorch program on XNNPACK, as a device bundle runs it.

`treefuse pack executorch:m.pte` copies this file into the bundle's runner as `executorch_engine.py`; it
imports nothing of treefuse, only numpy and the executorch runtime (whose pip build links libtorch, so
tensors cross as torch tensors).
"""
from __future__ import annotations

from importlib import import_module
from pathlib import Path

import numpy as np

try:
    from .engines import BundleError, import_runtime  # inside a bundle's runner package
except ImportError:  # read in treefuse's own tree
    from treefuse.portable.engines import BundleError, import_runtime

RUNTIMES = (("executorch.runtime", "executorch"),)
NEEDS = "executorch"


def load(path: Path, threads: int | None) -> "ExecuTorchEngine":
    return ExecuTorchEngine(path, threads)


class ExecuTorchEngine:
    """The program's `forward`, one image at a time (its input shape is fixed per call)."""

    def __init__(self, path: Path, threads: int | None) -> None:
        runtime, self.runtime = import_runtime(RUNTIMES)
        if threads:
            import_module("executorch.extension.pybindings.portable_lib")._unsafe_reset_threadpool(threads)
        self.method = runtime.Runtime.get().load_program(str(path)).load_method("forward")
        self.torch = import_module("torch")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        outputs = [self.method.execute([self.torch.from_numpy(np.ascontiguousarray(image[None]))])[0].numpy()
                   for image in batch]
        return np.concatenate(outputs, axis=0)

    def layers(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        raise BundleError("--layers: ExecuTorch runs this program as one XNNPACK delegate call, which keeps its "
                          "layers to itself (ExecuTorch's debugger sees one operator); use --layers on the ONNX "
                          "bundle of the same model")
