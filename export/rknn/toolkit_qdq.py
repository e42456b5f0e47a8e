"""A QDQ model rewritten so that rknn-toolkit2 computes what ONNX Runtime computes from it.

rknn-toolkit2 2.5.0 loads 7-bit convolution weights (ONNX Runtime's reduce_range layout: int8
levels -64..64) at 128/127 (= 64/63.5) of the scale their DequantizeLinear names, so every such
convolution's output grows by 0.79% and the growth compounds through the network; bias and
activations keep their scales. Measured on the rk3588 simulator with
the committed QAT model: the head's output differed from ONNX Runtime's in 35% of its values (up
to 2 steps); with each weight scale given as 127/128 of itself it is bit-exact (1 value in 10^6).
Full-range int8 weights (TensorRT's layout, levels up to 127) are read as written: rescaling them
measured worse (task drop 0.253 dB vs 0.120), so they are left alone.

Imported by simulator.py (the toolkit's worker's and an RKNN bundle's) in the toolkit's venv: numpy and onnx only.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

WEIGHT_SCALE = "weight_scale_127_128"  # the rewrite's name, recorded in the simulator's recipe
REWRITES = (WEIGHT_SCALE,)  # applied to every QDQ model built from now on, in this order


SEVEN_BIT_LEVEL = 64  # the largest weight level of ONNX Runtime's reduce_range (7-bit) layout


def compensate_weight_scales(model: Any) -> int:
    """Scale every 7-bit symmetric convolution weight's DequantizeLinear scale by 127/128; returns how many."""
    import numpy as np
    from onnx import numpy_helper

    initializers = {tensor.name: tensor for tensor in model.graph.initializer}
    conv_weights = {node.input[1] for node in model.graph.node if node.op_type == "Conv"}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "DequantizeLinear" or node.output[0] not in conv_weights:
            continue
        weights, scale = initializers.get(node.input[0]), initializers.get(node.input[1])
        zero = initializers.get(node.input[2]) if len(node.input) > 2 else None
        if weights is None or scale is None or numpy_helper.to_array(weights).dtype != np.int8:
            continue
        if np.abs(numpy_helper.to_array(weights).astype(np.int16)).max() > SEVEN_BIT_LEVEL:
            continue  # full-range int8 weights: the toolkit reads their scale as written
        if zero is not None and np.any(numpy_helper.to_array(zero)):
            continue  # an asymmetric weight: the toolkit's reading was not measured for it
        value = numpy_helper.to_array(scale).astype(np.float64) * 127 / 128
        scale.CopyFrom(numpy_helper.from_array(value.astype(np.float32), scale.name))
        changed += 1
    return changed


def prepared_for_toolkit(source: Path, target: Path, rewrites: list[str] | tuple[str, ...]) -> Path:
    """`source` with `rewrites` applied, written to `target` (the file the toolkit loads); `source` is untouched."""
    import onnx

    model = onnx.load(str(source))
    for name in rewrites:
        if name != WEIGHT_SCALE:
            raise ValueError(f"unknown QDQ rewrite {name!r} in the simulator's recipe; re-export the model")
        compensate_weight_scales(model)
    onnx.save(model, str(target))
    return target
