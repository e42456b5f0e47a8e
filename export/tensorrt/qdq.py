"""INT8 QDQ placed the way TensorRT's explicit quantization wants it (the `--target tensorrt` export).

What TensorRT's ONNX parser accepts and how its optimizer fuses Q/DQ (docs/tensorrt.md cites the
NVIDIA pages): signed INT8 with zero point 0 (QuantizeLinear "y_zero_point must be 0",
DequantizeLinear "x_zero_point must be zero", INT8 inputs only), scales as initializers, per-channel
weight scales on the output-channel axis (axis 0 of a Conv weight). Placement follows NVIDIA's Q/DQ
placement recommendations: quantize every input of the weighted ops (each Conv's activation and
weight), not their outputs, and quantize the residual input of skip-connection Adds.

So, unlike the ONNX Runtime target: activations int8 symmetric (not uint8 asymmetric), biases
stay float (ONNX Runtime's int32 bias DequantizeLinear is not an INT8 tensor TensorRT can take),
only Conv inputs get Q/DQ (no Q/DQ on Concat, Relu or the Conv+Conv Adds: TensorRT fuses those
itself), and none of the CPU-kernel rewrites (concat split, padded head, widened tail), which
exist only for ONNX Runtime's symmetric-conv kernels.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

TENSORRT_INT8_SETTINGS = {"format": "QDQ", "activations": "int8 symmetric (zero point 0)",
                          "weights": "int8 symmetric per-channel, axis 0", "biases": "float",
                          "quantized_inputs": "every Conv input and weight; the skip input of each residual Add",
                          "reduce_range": False, "onnxruntime_rewrites": "none"}


def quantize_tensorrt_model(fp32_path: Path, out_path: Path, cache_path: Path, method: str,
                            float_nodes: Sequence[str] = ()) -> None:
    """Static symmetric INT8 QDQ for TensorRT from a saved range cache, leaving `float_nodes` unquantized."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from treefuse.export.onnx.ort_quantizer import calibration_method, quiet_quantizer

    with quiet_quantizer():
        quantize_static(str(fp32_path), str(out_path), None, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], per_channel=True, reduce_range=False,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        nodes_to_exclude=list(float_nodes), calibrate_method=calibration_method(method),
                        calibration_cache_path=str(cache_path),
                        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False,
                                       "OpTypesToExcludeOutputQuantization": ["Conv"]})
    model = onnx.load(str(out_path))
    route_skip_inputs(model)
    onnx.save(model, str(out_path))


def route_skip_inputs(model: Any) -> int:
    """Feed each residual Add's skip input through the DequantizeLinear its tensor already has; returns the count.

    A skip input here is an Add input that some Conv also reads (a block's input, quantized for the
    block's convs); reusing that tensor's Q/DQ adds no new scale. An Add that produces a graph
    output (input image + residual) reads float tensors only: the image is not requantized.
    """
    graph = model.graph
    outputs = {o.name for o in graph.output}
    producers = {out: node for node in graph.node for out in node.output}
    dequantized = {}
    for node in graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in producers:
            quantize = producers[node.input[0]]
            if quantize.op_type == "QuantizeLinear":
                dequantized[quantize.input[0]] = node.output[0]
    originals = {dq: tensor for tensor, dq in dequantized.items()}
    routed = 0
    for node in graph.node:
        if node.op_type != "Add":
            continue
        makes_output = bool(set(node.output) & outputs)
        for index, name in enumerate(node.input):
            if makes_output and name in originals:
                node.input[index] = originals[name]
            elif not makes_output and name in dequantized:
                node.input[index] = dequantized[name]
                routed += 1
    return routed
