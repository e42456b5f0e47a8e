"""An ExecuTorch program on XNNPACK, as a device bundle runs it.

`treefuse pack executorch:m.pte` copies this file into the bundle's runner as `executorch_engine.py`; it
imports nothing of treefuse, only numpy and the executorch runtime (whose pip build links libtorch, so
tensors cross as torch tensors). `run.py --layers` runs the layers program `m.layers.pte` the bundle carries
beside `m.pte` (export/executorch/layers.py): XNNPACK keeps a normal program's layers to itself.
"""
from __future__ import annotations

import hashlib
import json
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


def layers_program_path(program: Path) -> Path:
    """Where the layers program of `m.pte` lives: `m.layers.pte`."""
    return program.with_name(f"{program.stem}.layers{program.suffix}")


def companion_files(program: Path) -> list[Path]:
    """What a bundle carries beside the program: its layers program and that one's sidecar, when exported."""
    layers = layers_program_path(program)
    if not layers.is_file():
        return []
    layer_names(program)  # a stale layers program is refused when packed, not found out on the device
    return [layers, _sidecar(layers)]


def layer_names(program: Path) -> list[str]:
    """The names of the layers program's outputs, in order; BundleError when it is missing or not this program's."""
    layers = layers_program_path(program)
    try:
        record = json.loads(_sidecar(layers).read_text())["provenance"]
        names, made_for = list(record["layers"]), record["program_sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise BundleError(f"--layers needs {layers.name} and its {_sidecar(layers).name} beside {program.name}: "
                          "export them with `treefuse export executorch --layers` and pack again") from None
    if made_for != hashlib.sha256(program.read_bytes()).hexdigest():
        raise BundleError(f"{layers.name} was made for other bytes than {program.name}; export both again "
                          "with `treefuse export executorch --layers`")
    return names


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".json")  # treefuse.sidecar's rule, which a bundle cannot import


class ExecuTorchEngine:
    """The program's `forward`, one image at a time (its input shape is fixed per call)."""

    def __init__(self, path: Path, threads: int | None) -> None:
        self.runtime_module, self.runtime = import_runtime(RUNTIMES)
        if threads:
            import_module("executorch.extension.pybindings.portable_lib")._unsafe_reset_threadpool(threads)
        self.path = path
        self.method = self.runtime_module.Runtime.get().load_program(str(path)).load_method("forward")
        self.torch = import_module("torch")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        outputs = [self.method.execute([self._tensor(image)])[0].numpy() for image in batch]
        return np.concatenate(outputs, axis=0)

    def layers(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output under the folded model's names, from the layers program (batch of one image)."""
        if not hasattr(self, "layers_method"):
            self.layer_names = layer_names(self.path)
            program = self.runtime_module.Runtime.get().load_program(str(layers_program_path(self.path)))
            self.layers_method = program.load_method("forward")
        per_image = [self.layers_method.execute([self._tensor(image)]) for image in batch]
        if any(len(values) != len(self.layer_names) for values in per_image):
            raise BundleError(f"{layers_program_path(self.path).name} returned another number of tensors than "
                              "its sidecar names; export it again")
        return {name: np.concatenate([values[index].numpy() for values in per_image], axis=0)
                for index, name in enumerate(self.layer_names)}

    def _tensor(self, image: np.ndarray):
        return self.torch.from_numpy(np.ascontiguousarray(image[None]))
