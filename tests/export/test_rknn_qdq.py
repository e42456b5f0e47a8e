"""A QDQ model prepared for rknn-toolkit2: 7-bit weight scales compensated, so the NPU computes what ONNX Runtime does.

The rewrite's own tests run everywhere; the toolkit's reading of 7-bit weights (the reason for it) is
checked on its simulator and skips with the reason without .venv-rknn (`make install-rknn`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from treefuse.export.rknn.toolkit_qdq import REWRITES, WEIGHT_SCALE, compensate_weight_scales, prepared_for_toolkit
from treefuse.runtimes.backends.rknn_runner import toolkit_missing
from treefuse.runtimes.inspect.names import layer_tensors

QAT_MODEL = Path(__file__).resolve().parents[2] / "reports" / "artifacts" / "default.int8.onnx"  # ONNX Runtime's layout

needs_toolkit = pytest.mark.skipif(toolkit_missing() is not None, reason=f"{toolkit_missing()}")
INPUT_SCALE, OUTPUT_SCALE, OUTPUT_ZERO = 1 / 255, 0.02, 128


def qdq_conv_model(levels: np.ndarray, weight_scale: np.ndarray, weight_zero: int = 0) -> onnx.ModelProto:
    """input (u8 QDQ) -> Conv 3x3 with int8 weights `levels` x `weight_scale` per channel -> u8 QDQ -> output."""
    channels_out, channels_in = levels.shape[:2]
    init = [numpy_helper.from_array(np.array(INPUT_SCALE, np.float32), "in_scale"),
            numpy_helper.from_array(np.array(0, np.uint8), "in_zero"),
            numpy_helper.from_array(levels.astype(np.int8), "w_levels"),
            numpy_helper.from_array(weight_scale.astype(np.float32), "w_scale"),
            numpy_helper.from_array(np.full(channels_out, weight_zero, np.int8), "w_zero"),
            numpy_helper.from_array(np.array(OUTPUT_SCALE, np.float32), "out_scale"),
            numpy_helper.from_array(np.array(OUTPUT_ZERO, np.uint8), "out_zero")]
    nodes = [helper.make_node("QuantizeLinear", ["input", "in_scale", "in_zero"], ["in_q"], name="in_q"),
             helper.make_node("DequantizeLinear", ["in_q", "in_scale", "in_zero"], ["in_dq"], name="in_dq"),
             helper.make_node("DequantizeLinear", ["w_levels", "w_scale", "w_zero"], ["w"], name="w_dq", axis=0),
             helper.make_node("Conv", ["in_dq", "w"], ["conv"], name="/head/Conv", pads=[1, 1, 1, 1]),
             helper.make_node("QuantizeLinear", ["conv", "out_scale", "out_zero"], ["out_q"], name="out_q"),
             helper.make_node("DequantizeLinear", ["out_q", "out_scale", "out_zero"], ["output"], name="out_dq")]
    graph = helper.make_graph(nodes, "qdq_conv", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                [1, channels_in, 16, 16])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, channels_out, 16, 16])],
                              init)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8)


def seven_bit_levels(rng: np.random.Generator, channels_out: int = 4, channels_in: int = 3) -> np.ndarray:
    levels = rng.integers(-64, 65, (channels_out, channels_in, 3, 3))
    levels[:, 0, 0, 0] = 64  # every channel reaches the 7-bit layout's largest level, as ONNX Runtime's do
    return levels


def weight_scale_of(model: onnx.ModelProto) -> np.ndarray:
    return numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == "w_scale"))


def test_seven_bit_weights_get_127_128_of_their_scale_and_nothing_else_changes():
    rng = np.random.default_rng(0)
    scale = rng.uniform(0.001, 0.01, 4)
    model = qdq_conv_model(seven_bit_levels(rng), scale)
    assert compensate_weight_scales(model) == 1
    np.testing.assert_allclose(weight_scale_of(model), scale * 127 / 128, rtol=1e-6)
    untouched = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer if t.name != "w_scale"}
    assert untouched["out_scale"] == np.float32(OUTPUT_SCALE) and untouched["in_scale"] == np.float32(INPUT_SCALE)


def test_full_range_and_asymmetric_weights_are_left_as_written():
    rng = np.random.default_rng(1)
    scale = rng.uniform(0.001, 0.01, 4)
    full_range = rng.integers(-127, 128, (4, 3, 3, 3))
    full_range[:, 0, 0, 0] = 127  # TensorRT's layout: the toolkit reads these scales as written
    for model in (qdq_conv_model(full_range, scale), qdq_conv_model(seven_bit_levels(rng), scale, weight_zero=3)):
        assert compensate_weight_scales(model) == 0
        np.testing.assert_array_equal(weight_scale_of(model), scale.astype(np.float32))


def test_a_prepared_copy_leaves_the_source_alone_and_refuses_an_unknown_rewrite(tmp_path):
    rng = np.random.default_rng(2)
    source = tmp_path / "model.onnx"
    onnx.save(qdq_conv_model(seven_bit_levels(rng), rng.uniform(0.001, 0.01, 4)), str(source))
    before = source.read_bytes()
    prepared = prepared_for_toolkit(source, tmp_path / "prepared.onnx", REWRITES)
    assert source.read_bytes() == before and prepared.read_bytes() != before
    with pytest.raises(ValueError, match="unknown QDQ rewrite 'other'"):
        prepared_for_toolkit(source, tmp_path / "other.onnx", ["other"])


HEAD = "head"  # the first layer: what reaches it is the input's quantization alone, the same in both


def head_steps(tmp_path, rewrites: list[str]) -> np.ndarray:
    """The committed QAT model's head on the simulator minus ONNX Runtime's, in quantization steps (16x16 input).

    The whole model is built (cut down to its head, the toolkit fuses differently and fails on the input's
    channel padding); only the head leaves it, through an Identity as `treefuse diff` exposes it."""
    import onnxruntime as ort

    from treefuse.export.rknn.exporter import pin_input
    from treefuse.runtimes.backends.rknn_runner import SimulatorWorker

    recipe = tmp_path / f"recipe-{len(rewrites)}"
    recipe.mkdir()
    model_path = recipe / "model.onnx"
    model_path.write_bytes(QAT_MODEL.read_bytes())
    pin_input(model_path, (16, 16))
    model = onnx.load(str(model_path))
    head = layer_tensors(model.graph)[HEAD]
    model.graph.node.append(helper.make_node("Identity", [head], ["head_exposed"], name="head_exposed"))
    model.graph.output.append(helper.make_tensor_value_info("head_exposed", TensorProto.FLOAT, [1, 16, 16, 16]))
    onnx.save(model, str(model_path))
    image = np.random.default_rng(4).random((1, 3, 16, 16), dtype=np.float32)
    expected = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"]).run(["head_exposed"],
                                                                                            {"input": image})[0]
    worker = SimulatorWorker({"recipe_dir": str(recipe), "mode": "qdq", "platform": "rk3588", "qdq_rewrites": rewrites})
    try:
        simulated = worker.run(image)[1]
    finally:
        worker.close()
    step = next(numpy_helper.to_array(t) for t in model.graph.initializer if t.name == "/Relu_output_0_scale")
    return np.round((simulated - expected) / step)


@pytest.mark.slow  # two builds of the whole model: about 10 s of CPU each
@needs_toolkit
def test_the_toolkit_computes_seven_bit_convolutions_at_128_127_and_the_rewrite_makes_them_onnx_runtimes(tmp_path):
    as_read, rewritten = head_steps(tmp_path, []), head_steps(tmp_path, [WEIGHT_SCALE])
    assert np.mean(as_read != 0) > 0.2 and np.mean(as_read) > 0.1  # as read: larger than ONNX Runtime's, often
    assert np.abs(rewritten).max() <= 1 and np.mean(rewritten != 0) < 0.05 and abs(np.mean(rewritten)) < 0.02
