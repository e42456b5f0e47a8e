"""FP16 safety (export/fp16_range.py): ranges per layer, the overflow and flush-to-zero gates, the sidecar."""
from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from treefuse.calib.build import build_calibration_set
from treefuse.errors import GateFailed
from treefuse.export.tensorrt import build as tensorrt_build
from treefuse.export.fp16_range import FP16_MAX, check_fp16, fp16_report
from treefuse.export.tensorrt.build import build_engine, plan_engine
from treefuse.export.tensorrt.profile import ShapeProfile

from media import write_images
from trt_fakes import fake_backend

PROFILE = ShapeProfile((1, 3, 16, 16), (1, 3, 32, 48), (1, 3, 64, 64))


def scaled_conv(path, gain: float):
    """input -> 1x1 Conv 3->3 (weights `gain` x identity) -> Relu -> output."""
    weight = numpy_helper.from_array((np.eye(3, dtype=np.float32) * gain).reshape(3, 3, 1, 1), "w")
    nodes = [helper.make_node("Conv", ["input", "w"], ["scaled"], name="scale_conv"),
             helper.make_node("Relu", ["scaled"], ["output"], name="relu")]
    dims = ["batch", 3, "height", "width"]
    graph = helper.make_graph(nodes, "scaled", [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)], [weight])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fp16-calib")
    return build_calibration_set(write_images(root / "images", 3), root / "set", 3, (32, 48), seed=0)


def test_ranges_are_measured_per_layer(tmp_path, calib_dir):
    report = fp16_report(scaled_conv(tmp_path / "m.onnx", 2.0), calib_dir)
    conv = next(row for row in report["layers"] if row["layer"] == "scale_conv")
    assert 1.5 < conv["max_abs"] <= 2.0 and conv["margin_to_fp16_max"] == pytest.approx(FP16_MAX - conv["max_abs"])
    assert report["safe"] and report["smallest_margin"]["layer"] in ("scale_conv", "relu")
    assert report["thresholds"]["fp16_max"] == FP16_MAX and report["images"] == 3


@pytest.mark.parametrize("gain, reason", [(1e5, "overflows FP16"), (1e-9, "below FP16's smallest subnormal")])
def test_unsafe_layers_warn_or_fail_when_strict(tmp_path, calib_dir, gain, reason):
    path = scaled_conv(tmp_path / "m.onnx", gain)
    lines = []
    report = check_fp16(path, calib_dir, log=lines.append)
    assert not report["safe"] and any(reason in line and line.startswith("warning: FP16") for line in lines)
    with pytest.raises(GateFailed, match=reason):
        check_fp16(path, calib_dir, strict=True, log=lambda _: None)


def test_engine_sidecar_holds_the_fp16_ranges(tmp_path, calib_dir):
    out = tmp_path / "m.engine"
    plan = plan_engine(scaled_conv(tmp_path / "m.onnx", 2.0), out, precision="fp16", profile=PROFILE,
                       fp16_calib=calib_dir, log=lambda _: None)
    build_engine(plan, fake_backend())
    ranges = json.loads((tmp_path / "m.engine.json").read_text())["provenance"]["fp16_ranges"]
    assert ranges["safe"] and ranges["calib_sha256"] and all(row["kind"] == "activation" for row in ranges["layers"])


def test_strict_fp16_refuses_the_build_with_exit_1(tmp_path, calib_dir, monkeypatch, capsys):
    from treefuse.cli import main

    backend = fake_backend()
    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: backend)
    path = scaled_conv(tmp_path / "m.onnx", 1e5)
    out = tmp_path / "m.engine"
    code = main(["export", "trt", "--onnx", str(path), "--precision", "fp16", "--min-shape", "1x3x16x16",
                 "--opt-shape", "1x3x32x48", "--max-shape", "1x3x64x64", "--check-fp16", str(calib_dir),
                 "--strict-fp16", "--out", str(out)])
    assert code == 1 and "overflows FP16" in capsys.readouterr().err
    assert backend.pg.calls == {} and not list(tmp_path.glob("m.engine*"))
    with pytest.raises(Exception, match="--check-fp16"):
        plan_engine(path, out, precision="fp16", profile=PROFILE, strict_fp16=True)


@pytest.mark.slow
def test_coreml_fp16_check_measures_the_folded_network(tmp_path, calib_dir, weights_path):
    from treefuse.export.fp16_range import fp16_report_for_weights

    report = fp16_report_for_weights(weights_path, calib_dir, log=lambda _: None)
    assert report["model"].startswith("folded FP32 network") and report["smallest_margin"]["max_abs"] > 0
    assert any(row["op"] == "Conv" for row in report["layers"])


@pytest.mark.parametrize("extra, reason", [(["--precision", "fp32", "--check-fp16", "CALIB"], "fp32 computes in FP32"),
                                           (["--precision", "fp16", "--strict-fp16"], "needs a calibration set")])
def test_coreml_fp16_check_refusals(tmp_path, calib_dir, capsys, extra, reason):
    from treefuse.cli import main

    args = [str(calib_dir) if arg == "CALIB" else arg for arg in extra]
    assert main(["export", "coreml", *args, "--out", str(tmp_path / "m.mlpackage")]) == 2
    assert reason in capsys.readouterr().err and not (tmp_path / "m.mlpackage").exists()
