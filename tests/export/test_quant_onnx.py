"""FP16 and INT8 ONNX exports on a tiny network: precision, provenance, budget search, refusals."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from treefuse.calib.build import build_calibration_set
from treefuse.calib.store import load_calibration_set
from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.export.onnx.quantize import concat_overrides, conv_layers, convert_fp16, quantize_int8
from treefuse.gates import gates_for
from treefuse.metrics import calculate_psnr

from media import write_images

TINY = ModelConfig(channels=4, blocks=2, dilation_factor=2)


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    import torch

    from treefuse.checkpoint import save_weights
    from treefuse.export.onnx.exporter import export_onnx
    from treefuse.model import TreeFusionNet

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny")
    weights = save_weights(TreeFusionNet(TINY), root / "w.safetensors", note="tiny test weights")
    return export_onnx(weights, root / "fp32.onnx")


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    return build_calibration_set(write_images(root / "images", 4), root / "set", 4, (32, 48), seed=0)


def rewritten_convs(path):
    from treefuse.export.onnx.rewrite import split_concat_convs

    model, _ = split_concat_convs(onnx.load(str(path)))
    return [n.name for n in model.graph.node if n.op_type == "Conv"]


def run(path, batch):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]


def psnr_vs(reference, output):
    return calculate_psnr(np.clip(output[0].transpose(1, 2, 0), 0, 1), np.clip(reference[0].transpose(1, 2, 0), 0, 1))


def metadata(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}


def test_fp16_close_to_fp32_with_float32_io(tiny_onnx, tmp_path):
    out = convert_fp16(tiny_onnx, tmp_path / "m16.onnx")
    model = onnx.load(str(out))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    batch = np.random.default_rng(0).random((1, 3, 32, 48), dtype=np.float32)
    assert psnr_vs(run(tiny_onnx, batch), run(out, batch)) >= gates_for("fp16").min_output_psnr_db
    meta = metadata(out)
    assert meta["precision"] == "fp16" and meta["source_sha256"] == metadata(tiny_onnx)["source_sha256"]


def test_int8_is_qdq_per_channel_and_records_calibration(tiny_onnx, calib_dir, tmp_path):
    result = quantize_int8(tiny_onnx, tmp_path / "m8.onnx", calib_dir, log=lambda _: None)
    model = onnx.load(str(result.path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    quantized_weights = [inits[n.input[0]] for n in model.graph.node
                         if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim == 4]
    assert len(quantized_weights) == len(rewritten_convs(tiny_onnx)) > len(conv_layers(tiny_onnx))
    assert all(w.dtype == np.int8 for w in quantized_weights)
    weight_scales = [inits[n.input[1]] for n in model.graph.node
                     if n.op_type == "DequantizeLinear" and n.input[0] in inits and inits[n.input[0]].ndim == 4]
    assert all(s.ndim == 1 and s.size > 1 for s in weight_scales)  # one scale per output channel
    activation_zero_points = [inits[n.input[2]] for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert activation_zero_points and all(z.dtype == np.uint8 for z in activation_zero_points)
    producer = next(n for n in model.graph.node if "output" in n.output)
    assert producer.op_type == "Add"  # the image output is not requantized to 8 bits
    meta = metadata(result.path)
    assert meta["precision"] == "int8" and meta["calib_sha256"] == load_calibration_set(calib_dir).sha256
    assert json.loads(meta["treefuse_provenance"])["calibration_method"] == "minmax"
    batch = load_calibration_set(calib_dir).images[:1].copy()
    assert psnr_vs(run(tiny_onnx, batch), run(result.path, batch)) > 30.0
    assert result.task is None and result.sensitivity_path is None


def test_budget_search_writes_sensitivity_table(tiny_onnx, calib_dir, paired_dir, tmp_path):
    lines = []
    result = quantize_int8(tiny_onnx, tmp_path / "m8.onnx", calib_dir, paired_dir=paired_dir, max_task_drop_db=5.0,
                           log=lines.append)
    table = json.loads(result.sensitivity_path.read_text())
    assert {row["layer"] for row in table["sensitivity"]} == set(rewritten_convs(tiny_onnx))
    recovered = [row["recovered_db"] for row in table["sensitivity"]]
    assert recovered == sorted(recovered, reverse=True)
    assert result.task["drop_db"] <= 5.0 and result.float_layers == []
    assert any("task PSNR" in line for line in lines)
    assert json.loads(metadata(result.path)["treefuse_provenance"])["task"]["max_task_drop_db"] == 5.0


def test_unmeetable_gates_fail_the_search_and_write_nothing(tiny_onnx, calib_dir, paired_dir, tmp_path, monkeypatch):
    from treefuse import gates
    from treefuse.errors import GateFailed

    # A floor no INT8 model reaches, even with every conv in float: the search gives up, naming the QAT route.
    monkeypatch.setitem(gates.DEFAULT_GATES, "int8", gates.Gates(199.0, 0.1, 0.4, precision="int8"))
    with pytest.raises(GateFailed, match="cannot meet its gates") as caught:
        quantize_int8(tiny_onnx, tmp_path / "m8.onnx", calib_dir, paired_dir=paired_dir, log=lambda _: None)
    assert "--target ort-qdq" in str(caught.value) and "--paired-images" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_a_budget_out_of_the_gate_range_is_refused(tiny_onnx, calib_dir, paired_dir, tmp_path):
    for budgets in ({"max_task_drop_db": -100.0}, {"max_worst_task_drop_db": float("nan")}):
        with pytest.raises(TreefuseError, match="finite number"):
            quantize_int8(tiny_onnx, tmp_path / "m8.onnx", calib_dir, paired_dir=paired_dir, log=lambda _: None,
                          **budgets)
    assert list(tmp_path.iterdir()) == []


def test_a_mean_within_budget_does_not_stop_the_search_while_one_image_is_not(tiny_onnx, calib_dir, paired_dir,
                                                                              tmp_path):
    generous = quantize_int8(tiny_onnx, tmp_path / "a.onnx", calib_dir, paired_dir=paired_dir, max_task_drop_db=5.0,
                             max_worst_task_drop_db=5.0, log=lambda _: None)
    first = json.loads(generous.sensitivity_path.read_text())["steps"][0]  # every conv int8
    assert first["worst_drop_db"] > max(first["drop_db"], 0.0)  # one image loses more than the mean
    # A mean budget the all-INT8 model meets, a worst-image budget it does not: the search must keep going,
    # and what it accepts passes the final check (or the export fails; it must not pass on the mean alone).
    worst_budget = first["worst_drop_db"] / 2
    result = quantize_int8(tiny_onnx, tmp_path / "b.onnx", calib_dir, paired_dir=paired_dir,
                           max_task_drop_db=first["worst_drop_db"], max_worst_task_drop_db=worst_budget,
                           log=lambda _: None)
    report = json.loads(result.sensitivity_path.read_text())
    assert not report["steps"][0]["passed"] and "worst image" in report["steps"][0]["failures"][0]
    assert result.float_layers and report["steps"][-1]["passed"]
    assert result.task["worst_drop_db"] <= worst_budget and result.task["max_worst_task_drop_db"] == worst_budget
    verification = json.loads(metadata(result.path)["treefuse_provenance"])["verification"]
    assert verification["passed"] and verification["gates"]["max_worst_task_drop_db"] == worst_budget
    assert -verification["worst_image"]["task_delta_db"] == pytest.approx(result.task["worst_drop_db"])


def test_tampered_calibration_set_is_refused(tiny_onnx, calib_dir, tmp_path):
    import shutil

    copy = shutil.copytree(calib_dir, tmp_path / "calib")
    np.save(copy / "images.npy", np.load(copy / "images.npy")[:, :, ::-1].copy())
    with pytest.raises(TreefuseError, match="corrupt"):
        quantize_int8(tiny_onnx, tmp_path / "m8.onnx", copy, log=lambda _: None)
    assert not (tmp_path / "m8.onnx").exists()


def test_already_quantized_input_is_refused(tiny_onnx, calib_dir, tmp_path):
    first = quantize_int8(tiny_onnx, tmp_path / "m8.onnx", calib_dir, log=lambda _: None)
    with pytest.raises(TreefuseError, match="already quantized"):
        quantize_int8(first.path, tmp_path / "again.onnx", calib_dir, log=lambda _: None)


def test_calibration_method_is_recorded(tiny_onnx, calib_dir, tmp_path):
    result = quantize_int8(tiny_onnx, tmp_path / "m8.onnx", calib_dir, method="percentile", log=lambda _: None)
    assert json.loads(metadata(result.path)["treefuse_provenance"])["calibration_method"] == "percentile"


def test_concat_inputs_share_one_range():
    from onnx import helper

    node = helper.make_node("Concat", ["a", "b"], ["c"], axis=1)
    model = helper.make_model(helper.make_graph([node], "g", [], []))
    overrides = concat_overrides(model, {"a": (0.0, 1.0), "b": (0.0, 3.0), "c": (0.0, 3.0)})
    assert {name: (float(o[0]["rmin"]), float(o[0]["rmax"])) for name, o in overrides.items()} == {
        "a": (0.0, 3.0), "b": (0.0, 3.0), "c": (0.0, 3.0)}


def test_entropy_clips_ranges_minmax_keeps(tiny_onnx, calib_dir, tmp_path):
    # ORT's default entropy settings silently equal minmax; ours must actually search thresholds.
    from treefuse.export.onnx.quantize import calibrate

    calibration = load_calibration_set(calib_dir)
    ranges = {m: calibrate(tiny_onnx, calibration, m, tmp_path / f"{m}.json") for m in ("minmax", "entropy", "percentile")}
    full = {t: high - low for t, (low, high) in ranges["minmax"].items()}
    for method in ("entropy", "percentile"):
        widths = {t: ranges[method][t][1] - ranges[method][t][0] for t in full}
        assert all(widths[t] <= full[t] + 1e-6 for t in full), method
    assert any(ranges["entropy"][t][1] - ranges["entropy"][t][0] < 0.99 * full[t] for t in full)
