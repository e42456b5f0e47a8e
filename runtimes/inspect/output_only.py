"""The model's output alone, for a runtime that keeps its layers to itself (ExecuTorch's XNNPACK delegate).

`diff` then still judges the output against the reference and lists every other layer as unmatched:
ExecuTorch runs the whole program as one delegate call, which its own debugger also sees as one operator.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.inspect.names import OUTPUT


def open_layers(runner: Runner) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function batch -> {"output": the runner's output}."""
    return lambda batch: {OUTPUT: runner.infer(batch)}
