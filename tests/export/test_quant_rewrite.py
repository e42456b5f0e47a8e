"""The Concat -> 1x1 Conv split and the channel pads are exact and leave other graphs alone."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from treefuse.export.onnx.rewrite import pad_input_channels, pad_output_channels, split_concat_convs


def concat_conv_model(kernel: int = 1, extra_consumer: bool = False) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "wa"),
             numpy_helper.from_array(rng.standard_normal((5, 3, 1, 1)).astype(np.float32), "wb"),
             numpy_helper.from_array(rng.standard_normal((2, 9, kernel, kernel)).astype(np.float32), "wf"),
             numpy_helper.from_array(rng.standard_normal(2).astype(np.float32), "bf")]
    nodes = [helper.make_node("Conv", ["input", "wa"], ["a"], name="a", kernel_shape=[3, 3], pads=[1] * 4),
             helper.make_node("Conv", ["input", "wb"], ["b"], name="b", kernel_shape=[1, 1]),
             helper.make_node("Concat", ["a", "b"], ["ab"], name="cat", axis=1),
             helper.make_node("Conv", ["ab", "wf", "bf"], ["output"], name="fuse", kernel_shape=[kernel, kernel],
                              pads=[kernel // 2] * 4)]
    outputs = [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["n", 2, "h", "w"])]
    if extra_consumer:
        outputs.append(helper.make_tensor_value_info("ab", TensorProto.FLOAT, ["n", 9, "h", "w"]))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                         ["n", 3, "h", "w"])], outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(["output"], {"input": x})[0]


def test_split_is_exact_and_removes_concat():
    x = np.random.default_rng(1).random((1, 3, 12, 10), dtype=np.float32)
    original = concat_conv_model()
    expected = run(original, x)
    rewritten, count = split_concat_convs(concat_conv_model())
    onnx.checker.check_model(rewritten)
    assert count == 1 and not any(n.op_type == "Concat" for n in rewritten.graph.node)
    np.testing.assert_allclose(run(rewritten, x), expected, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{"kernel": 3}, {"extra_consumer": True}])
def test_leaves_other_patterns_alone(kwargs):
    rewritten, count = split_concat_convs(concat_conv_model(**kwargs))
    assert count == 0 and any(n.op_type == "Concat" for n in rewritten.graph.node)


def test_treefuse_export_is_rewritten_exactly(onnx_path):
    x = np.random.default_rng(2).random((1, 3, 24, 20), dtype=np.float32)
    model = onnx.load(str(onnx_path))
    expected = run(model, x)
    rewritten, count = split_concat_convs(model)
    assert count == 15  # 8 upper within-block fuses + 7 across-block fuses of the paper's model
    rewritten, padded = pad_input_channels(rewritten)
    assert padded == 1  # the head conv reads the 3-channel image
    rewritten, widened = pad_output_channels(rewritten)
    assert widened == 1  # the tail writes 3 channels
    onnx.checker.check_model(rewritten)
    np.testing.assert_allclose(run(rewritten, x), expected, atol=1e-5)


def rewrite_exactly(rewrite, seed):
    """Apply a channel-padding rewrite to the concat-conv model; check it is valid and exact."""
    x = np.random.default_rng(seed).random((1, 3, 12, 10), dtype=np.float32)
    rewritten, count = rewrite(concat_conv_model())
    onnx.checker.check_model(rewritten)
    np.testing.assert_allclose(run(rewritten, x), run(concat_conv_model(), x), atol=1e-5)
    return rewritten, count, {i.name: numpy_helper.to_array(i) for i in rewritten.graph.initializer}


def test_input_pad_is_exact_and_reaches_multiple_of_four():
    rewritten, count, weights = rewrite_exactly(pad_input_channels, seed=3)
    assert count == 2 and weights["wa"].shape[1] == weights["wb"].shape[1] == 4
    assert [n.op_type for n in rewritten.graph.node].count("Pad") == 1  # one pad shared by both convs


def test_input_pad_leaves_aligned_inputs_alone():
    model = concat_conv_model()
    model.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 4
    for init in model.graph.initializer:
        if init.name in ("wa", "wb"):
            array = numpy_helper.to_array(init)
            init.CopyFrom(numpy_helper.from_array(np.concatenate([array, array[:, :1]], axis=1), init.name))
    rewritten, count = pad_input_channels(model)
    assert count == 0 and not any(n.op_type == "Pad" for n in rewritten.graph.node)


def test_output_pad_is_exact_and_widens_narrow_convs_only():
    rewritten, count, weights = rewrite_exactly(pad_output_channels, seed=4)
    assert count == 3 and {weights[name].shape[0] for name in ("wa", "wb", "wf", "bf")} == {16}
    assert pad_output_channels(rewritten)[1] == 0
