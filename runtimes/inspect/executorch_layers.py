"""ExecuTorch's layers for `diff`: from the layers program beside the .pte (`export executorch --layers`), else
the output alone.

XNNPACK runs a normal program as one delegate call, which ExecuTorch's own debugger also sees as one
operator; the layers program (export/executorch/layers.py) is the same network lowered the same way with
every layer as an output, checked at export to give the program's output exactly. It runs through the
format's bundle engine (named by its row), as a device bundle's `run.py --layers` runs it.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.formats import format_of, resolve
from treefuse.portable.manifest import BundleError
from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.inspect import output_only


def open_layers(runner: Runner) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function batch -> {layer: output}: every layer with a layers program, else {"output": ...}."""
    engine = format_of("executorch").bundle_engine
    if not resolve(f"{engine}:layers_program_path")(runner.path).is_file():
        return output_only.open_layers(runner)
    layers = resolve(f"{engine}:ExecuTorchEngine")(runner.path, runner.threads).layers

    def capture(batch: np.ndarray) -> dict[str, np.ndarray]:
        try:
            return layers(batch)
        except BundleError as exc:  # a stale or foreign layers program: the user's file, one line
            raise TreefuseError(f"executorch: {exc}") from None

    return capture
