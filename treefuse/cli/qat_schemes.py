"""Which fake-quant network each QAT target trains: the CLI composes the export stage's schemes with train/qat.py.

The schemes live beside their formats' exporters (they must match what those write); the trainer
knows none of them. Each target gives a network, its weights, its learned scales (ONNX layouts) and
a switch for its range observers (XNNPACK, Core ML).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

ONNX_TARGETS = ("ort-qdq", "trt-qdq")


def start_scheme(target: str, weights: Path, calib: Path, run_dir: Path, weight_bits: int | None) -> dict[str, Any]:
    """Write the target's starting point into RUN/base (post-training INT8); returns facts for qat.json."""
    if target in ONNX_TARGETS:
        from treefuse.export.onnx.qat_export import make_qat_base

        return make_qat_base(weights, calib, run_dir, weight_bits, target)
    return _observer_scheme(target).make_start(weights, calib, run_dir)


def open_network(target: str, run_dir: Path) -> tuple[Any, list, list, Callable[[bool], Any] | None]:
    """(network at its starting values, weight parameters, scale parameters, observer switch or None)."""
    if target in ONNX_TARGETS:
        from treefuse.export.onnx.qat_export import load_qat_module

        module, _ = load_qat_module(run_dir)
        return module, module.weight_parameters(), module.scale_parameters(), None
    from treefuse.export.observed_qat import set_observers

    network = _observer_scheme(target).load_network(run_dir)
    return network, list(network.parameters()), [], lambda enabled: set_observers(network, enabled)


def _observer_scheme(target: str) -> Any:
    if target == "xnnpack-int8":
        from treefuse.export.pt2e import qat
    else:
        from treefuse.export.coreml import qat
    return qat
