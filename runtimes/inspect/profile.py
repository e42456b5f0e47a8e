"""`treefuse profile`: one backend's own profiler, grouped by op type and by layer, Q/DQ and layout apart.

A runtime's profiler (the format table's `profiler` column) returns one row per executed node per
run: {"node", "op_type", "ms"} plus anything it knows (the kernel it picked). Everything else here
is shared: averaging over runs, the groups, the typed record.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from treefuse.device import device_fingerprint
from treefuse.errors import TreefuseError
from treefuse.formats import FORMATS, format_of, resolve
from treefuse.provenance import provenance
from treefuse.results import ProfileResult
from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.inspect.names import layer_of_node

# Op types of ONNX Runtime and OpenVINO that only move or convert data: time a fused INT8 graph should not spend.
QUANTIZE = {"QuantizeLinear", "DynamicQuantizeLinear", "FakeQuantize", "quantize"}
DEQUANTIZE = {"DequantizeLinear", "dequantize"}
LAYOUT = {"Transpose", "ReorderInput", "ReorderOutput", "Reorder", "Reshape", "Pad", "Slice", "Concat",
          "Concatenation", "Split", "Convert"}


# XNNPACK (ExecuTorch) names ops "Convolution (NHWC, QC8) IGEMM"; its Convert goes float <-> int8 either way.
XNNPACK = {"Convert": "quantize or dequantize", "Transpose": "layout", "Copy": "layout"}


def group_of(op_type: str) -> str:
    """compute, quantize, dequantize or layout (data movement and conversion)."""
    if op_type in QUANTIZE:
        return "quantize"
    if op_type in DEQUANTIZE:
        return "dequantize"
    if op_type in LAYOUT:
        return "layout"
    return XNNPACK.get(op_type.split(" (")[0], "compute")


def profile_backend(runner: Runner, size: tuple[int, int], runs: int, threads: int | None = None) -> ProfileResult:
    """Profile an active runner on `runs` runs of a 1x3xHxW input (after one unprofiled warm-up)."""
    row = format_of(runner.kind)
    if row.profiler is None:
        able = ", ".join(fmt.kind for fmt in FORMATS if fmt.profiler)
        raise TreefuseError(f"{runner.kind}: treefuse has no profiler for this format yet; profile one of {able}")
    batch = np.random.default_rng(0).random((1, 3, *size), dtype=np.float32)
    name, node_rows = resolve(row.profiler)(runner, batch, runs)
    nodes = _per_node(node_rows, runs)
    return ProfileResult(device=device_fingerprint(threads), provenance=provenance(), backend=runner.describe(),
                         size=list(size), runs=runs, profiler=name, total_ms=sum(n["ms"] for n in nodes),
                         groups_ms=_sum_by(nodes, lambda n: group_of(n["op_type"])),
                         op_types=_table(nodes, lambda n: n["op_type"], "op_type"),
                         layers=_table(nodes, lambda n: layer_of_node(n["node"]), "layer"), nodes=nodes)


def _per_node(rows: list[dict[str, Any]], runs: int) -> list[dict[str, Any]]:
    """One row per node, its time averaged per run, slowest first."""
    merged: dict[str, dict[str, Any]] = {}
    for row in rows:
        seen = merged.setdefault(row["node"], {**row, "ms": 0.0})
        seen["ms"] += row["ms"] / runs
    return sorted(merged.values(), key=lambda n: -n["ms"])


def _sum_by(nodes: list[dict[str, Any]], key) -> dict[str, float]:
    sums: dict[str, float] = defaultdict(float)
    for node in nodes:
        sums[key(node)] += node["ms"]
    return dict(sorted(sums.items(), key=lambda item: -item[1]))


def _table(nodes: list[dict[str, Any]], key, label: str) -> list[dict[str, Any]]:
    total = sum(n["ms"] for n in nodes) or 1.0
    counts: dict[str, int] = defaultdict(int)
    for node in nodes:
        counts[key(node)] += 1
    return [{label: name, "ms": ms, "share": ms / total, "nodes": counts[name]} for name, ms in _sum_by(nodes, key).items()]
