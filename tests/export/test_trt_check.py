"""Each TensorRT parser rule of export/tensorrt/check.py trips on a model tampered to break it, in one line."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from treefuse.errors import TreefuseError
from treefuse.export.tensorrt import build as tensorrt_build
from treefuse.export.tensorrt.build import plan_engine
from treefuse.export.tensorrt.check import check_tensorrt_onnx, require_tensorrt_onnx
from treefuse.export.tensorrt.profile import ShapeProfile

from trt_fakes import fake_backend

PROFILE = ShapeProfile((1, 3, 16, 16), (1, 3, 32, 32), (1, 3, 64, 64))


def qdq_conv(path, *, zero_point=np.int8(0), activation_scale=0.01, weight_axis=0, opset=17, spatial=("h", "w"),
             bias_as_int32=False, drop_zero_point=False, domain=""):
    """input -> Q -> DQ -> Conv(DQ(int8 weight, per-channel)) -> output: TensorRT's layout unless told otherwise."""
    weight = np.arange(-8, 10, dtype=np.int8).reshape(2, 3, 1, 3)[:, :, :, :1].copy()  # 2 output channels
    weight_scale = np.array([0.02, 0.03] if weight_axis == 0 else [0.02, 0.03, 0.04], np.float32)
    inits = [numpy_helper.from_array(np.array(activation_scale, np.float32), "s"),
             numpy_helper.from_array(np.array(zero_point), "z"),
             numpy_helper.from_array(weight, "w_q"), numpy_helper.from_array(weight_scale, "w_s"),
             numpy_helper.from_array(np.zeros(weight_scale.shape, np.int8), "w_z")]
    q_inputs = ["input", "s"] if drop_zero_point else ["input", "s", "z"]
    nodes = [helper.make_node("QuantizeLinear", q_inputs, ["q"], name="q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq"),
             helper.make_node("DequantizeLinear", ["w_q", "w_s", "w_z"], ["w"], name="w_dq", axis=weight_axis)]
    conv_inputs = ["dq", "w"]
    if bias_as_int32:
        inits += [numpy_helper.from_array(np.array([5, -3], np.int32), "b_q"),
                  numpy_helper.from_array(np.array([2e-4, 3e-4], np.float32), "b_s")]
        nodes.append(helper.make_node("DequantizeLinear", ["b_q", "b_s"], ["b"], name="b_dq", axis=0))
        conv_inputs.append("b")
    nodes.append(helper.make_node("Conv", conv_inputs, ["output"], name="conv", domain=domain))
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, *spatial])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 2, *spatial])], inits)
    imports = [helper.make_opsetid("", opset)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=imports)
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_the_tensorrt_layout_passes(tmp_path):
    result = require_tensorrt_onnx(qdq_conv(tmp_path / "m.onnx"), PROFILE)
    assert result.ok and result.qdq_nodes == 3 and result.per_channel_dequantizers == 1 and result.opset == 17


@pytest.mark.parametrize("tamper, reason", [
    ({"zero_point": np.uint8(128)}, "uint8 zero point"),
    ({"zero_point": np.uint8(0)}, "uint8 zero point"),
    ({"zero_point": np.int8(3)}, "non-zero zero point (3)"),
    ({"drop_zero_point": True}, "no zero point, so ONNX makes its output uint8"),
    ({"activation_scale": 0.0}, "scale of 0.0"),
    ({"activation_scale": -0.5}, "scale of -0.5"),
    ({"activation_scale": float("nan")}, "scale of nan"),
    ({"activation_scale": float("inf")}, "scale of inf"),
    ({"opset": 8}, "opset 8 is outside"),
    ({"opset": 25}, "opset 25 is outside"),
    ({"opset": 12}, "needs opset 13"),
    ({"weight_axis": 1}, "on axis 1 with 3 scales"),
    ({"bias_as_int32": True}, "dequantizes a int32 tensor"),
    ({"domain": "com.microsoft"}, "com.microsoft operator"),
    ({"spatial": (64, 48)}, "dimension 2 is fixed at 64"),
])
def test_each_rule_refuses_its_tampered_model(tmp_path, tamper, reason):
    path = qdq_conv(tmp_path / "m.onnx", **tamper)
    with pytest.raises(TreefuseError) as error:
        require_tensorrt_onnx(path, PROFILE)
    message = str(error.value)
    assert reason in message and "\n" not in message and str(path) in message


def test_scale_that_is_not_a_constant_is_refused(tmp_path):
    path = qdq_conv(tmp_path / "m.onnx")
    model = onnx.load(str(path))
    model.graph.input.append(helper.make_tensor_value_info("runtime_scale", TensorProto.FLOAT, []))
    model.graph.node[0].input[1] = "runtime_scale"
    onnx.save(model, str(path))
    assert "not a constant initializer" in check_tensorrt_onnx(path).problems[0]


def test_fixed_dims_inside_the_profile_pass(tmp_path):
    path = qdq_conv(tmp_path / "m.onnx", spatial=(32, 32))
    assert check_tensorrt_onnx(path, ShapeProfile((1, 3, 32, 32), (1, 3, 32, 32), (1, 3, 32, 32))).ok


def test_unreadable_model_is_one_line(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a protobuf at all")
    with pytest.raises(TreefuseError, match="not a readable ONNX model"):
        check_tensorrt_onnx(path)


def test_export_trt_refuses_before_any_build(tmp_path, monkeypatch, capsys):
    from treefuse.cli import main

    backend = fake_backend()
    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: backend)
    path = qdq_conv(tmp_path / "m.onnx", zero_point=np.uint8(128))
    out = tmp_path / "m.engine"
    assert main(["export", "trt", "--onnx", str(path), "--precision", "int8", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "uint8 zero point" in err and len(err.splitlines()) == 1
    assert backend.pg.calls == {} and not list(tmp_path.glob("m.engine*"))
    with pytest.raises(TreefuseError, match="uint8 zero point"):
        plan_engine(path, out, precision="int8", profile=PROFILE)


def test_check_records_into_the_sidecar(tmp_path):
    import json

    path = qdq_conv(tmp_path / "m.onnx")
    out = tmp_path / "m.engine"
    tensorrt_build.build_engine(plan_engine(path, out, precision="int8", profile=PROFILE), fake_backend())
    record = json.loads((tmp_path / "m.engine.json").read_text())["provenance"]
    assert record["tensorrt_check"]["ok"] and record["tensorrt_check"]["qdq_nodes"] == 3
    assert "not measured" in record["fp16_ranges"]
    trtexec = record["trtexec"].split()
    assert "--int8" in trtexec and "--fp16" in trtexec  # TensorRT 10, weakly typed: Q/DQ needs the INT8 flag
    strong = record["trtexec_strongly_typed"].split()
    assert "--stronglyTyped" in strong and "--int8" not in strong and "--fp16" not in strong
