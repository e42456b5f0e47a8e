"""Which fake-quant network each QAT target trains: the CLI composes the export stage's schemes with train/qat.py.

The schemes live beside their formats' exporters (they must match what those write) and are named by the
format table's QUANT_SCHEMES rows; the trainer knows none of them. Each gives a network, its weights, its
learned scales (ONNX layouts) and a switch for its range observers (XNNPACK, Core ML).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from treefuse.formats import QUANT_SCHEMES, resolve


def start_scheme(target: str, weights: Path, calib: Path, run_dir: Path, weight_bits: int | None) -> dict[str, Any]:
    """Write the target's starting point into RUN/base (post-training INT8); returns facts for qat.json."""
    scheme = QUANT_SCHEMES[target]
    if scheme.observers:
        return resolve(scheme.qat_start)(weights, calib, run_dir)
    return resolve(scheme.qat_start)(weights, calib, run_dir, weight_bits, target)


def open_network(target: str, run_dir: Path) -> tuple[Any, list, list, Callable[[bool], Any] | None]:
    """(network at its starting values, weight parameters, scale parameters, observer switch or None)."""
    scheme = QUANT_SCHEMES[target]
    if scheme.observers:
        from treefuse.export.observed_qat import set_observers

        network = resolve(scheme.qat_network)(run_dir)
        return network, list(network.parameters()), [], lambda enabled: set_observers(network, enabled)
    module, _ = resolve(scheme.qat_network)(run_dir)
    return module, module.weight_parameters(), module.scale_parameters(), None
