"""INT8 QDQ for TensorRT (`export onnx --target tensorrt`) vs the ONNX Runtime layout, on a tiny network."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from treefuse.calib.build import build_calibration_set
from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.export.onnx.quantize import quantize_int8
from treefuse.export.tensorrt.check import check_tensorrt_onnx, require_tensorrt_onnx
from treefuse.metrics import calculate_psnr

from media import write_images

TINY = ModelConfig(channels=4, blocks=2, dilation_factor=2)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """The tiny network as FP32 ONNX and as INT8 for each target, from one calibration set."""
    import torch

    from treefuse.checkpoint import save_weights
    from treefuse.export.onnx.exporter import export_onnx
    from treefuse.model import TreeFusionNet

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("trt-qdq")
    weights = save_weights(TreeFusionNet(TINY), root / "w.safetensors", note="tiny test weights")
    fp32 = export_onnx(weights, root / "fp32.onnx")
    calib = build_calibration_set(write_images(root / "images", 4), root / "calib", 4, (32, 48), seed=0)
    paths = {"fp32": fp32}
    for target in ("tensorrt", "onnxruntime"):
        paths[target] = quantize_int8(fp32, root / f"m.int8.{target}.onnx", calib, target=target, log=lambda _: None).path
    return paths


def zero_points(model):
    """(node, zero-point array) for every Q/DQ node; a missing zero point reads as ONNX's default uint8 0."""
    constants = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    return [(node, constants[node.input[2]] if len(node.input) > 2 else np.zeros((), np.uint8))
            for node in model.graph.node if node.op_type in ("QuantizeLinear", "DequantizeLinear")]


def committed_onnx() -> list[Path]:
    """ONNX files tracked by git (all under reports/ when git is not there)."""
    import subprocess

    try:
        listed = subprocess.run(["git", "ls-files", "*.onnx"], cwd=REPO, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return sorted((REPO / "reports").rglob("*.onnx"))
    return [REPO / line for line in listed.stdout.splitlines() if line]


def assert_signed_zero(model, where):
    points = zero_points(model)
    assert points, f"{where}: no QuantizeLinear/DequantizeLinear node to check"
    for node, zero_point in points:
        assert zero_point.dtype == np.int8, f"{where}: {node.name} has a {zero_point.dtype} zero point"
        assert not np.any(zero_point), f"{where}: {node.name} has a non-zero zero point"


def test_tensorrt_target_is_signed_symmetric_with_zero_points_0(exports):
    model = onnx.load(str(exports["tensorrt"]))
    assert_signed_zero(model, exports["tensorrt"])


def test_every_committed_tensorrt_model_is_signed_symmetric():
    # Any QDQ model in the repository that says it was made for TensorRT must hold only int8 zero points of 0.
    found = [path for path in committed_onnx() if {p.key: p.value for p in onnx.load(
        str(path), load_external_data=False).metadata_props}.get("target") == "tensorrt"]
    assert found, "no committed ONNX model says target=tensorrt (reports/tensorrt/default.int8.trt.onnx did)"
    for path in found:
        assert_signed_zero(onnx.load(str(path)), path)
        require_tensorrt_onnx(path)


def test_tensorrt_layout(exports):
    model = onnx.load(str(exports["tensorrt"]))
    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(producers[n.input[0]].op_type == "DequantizeLinear" for n in convs)  # every Conv input
    for conv in convs:
        weight_dq = producers[conv.input[1]]
        axis = next(a.i for a in weight_dq.attribute if a.name == "axis")
        constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
        weight, scale = constants[weight_dq.input[0]], constants[weight_dq.input[1]]
        assert weight_dq.op_type == "DequantizeLinear" and axis == 0 and scale.size == weight.shape[0], conv.name
        assert len(conv.input) < 3 or conv.input[2] in {i.name for i in graph.initializer}  # float bias
    quantized = [n.input[0] for n in graph.node if n.op_type == "QuantizeLinear"]
    assert not [t for t in quantized if t in producers and producers[t].op_type == "Conv"]  # Conv outputs stay float
    # No ONNX Runtime rewrites: no channel Pad or Slice, the Concats are still there.
    ops = {n.op_type for n in graph.node}
    assert "Pad" not in ops and "Slice" not in ops and "Concat" in ops
    skip_adds = [n for n in graph.node if n.op_type == "Add" and any(
        producers.get(i) is not None and producers[i].op_type == "DequantizeLinear" for i in n.input)]
    assert skip_adds  # the residual (skip) input of the block Adds reads its Q/DQ
    final = next(n for n in graph.node if n.output[0] == graph.output[0].name)
    assert "input" in final.input  # the image path stays float
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata["target"] == "tensorrt"
    assert json.loads(metadata["treefuse_provenance"])["int8_settings"]["activations"].startswith("int8 symmetric")


def test_tensorrt_target_passes_the_check_and_ort_target_fails_it_in_one_line(exports):
    assert check_tensorrt_onnx(exports["tensorrt"]).ok
    with pytest.raises(TreefuseError) as error:
        require_tensorrt_onnx(exports["onnxruntime"])
    message = str(error.value)
    assert "uint8 zero point" in message and "--target tensorrt" in message and "\n" not in message


def test_tensorrt_target_runs_on_onnx_runtime_close_to_fp32(exports):
    batch = np.random.default_rng(1).random((1, 3, 32, 48), dtype=np.float32)
    outputs = {name: ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]
               for name, path in exports.items()}
    as_image = {name: np.clip(out[0].transpose(1, 2, 0), 0, 1) for name, out in outputs.items()}
    assert calculate_psnr(as_image["tensorrt"], as_image["fp32"]) > 30


def test_target_is_checked(exports, tmp_path):
    with pytest.raises(TreefuseError, match="--target must be one of"):
        quantize_int8(exports["fp32"], tmp_path / "x.onnx", tmp_path, target="tflite")


def test_cli_check_exit_codes(exports, capsys):
    from treefuse.cli import main

    assert main(["check", "--target", "tensorrt", str(exports["tensorrt"])]) == 0
    assert "ok: TensorRT would accept" in capsys.readouterr().out
    assert main(["check", "--target", "tensorrt", str(exports["onnxruntime"])]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "re-export with" in err


def test_budget_search_works_for_the_tensorrt_target(exports, paired_dir, tmp_path):
    calib = build_calibration_set(write_images(tmp_path / "images", 4), tmp_path / "calib", 4, (32, 48), seed=0)
    result = quantize_int8(exports["fp32"], tmp_path / "m.onnx", calib, target="tensorrt", paired_dir=paired_dir,
                           max_task_drop_db=0.0, log=lambda _: None)
    assert result.task is not None and result.task["drop_db"] <= 0.0 and result.sensitivity_path.is_file()
    graph = onnx.load(str(result.path)).graph
    producers = {out: node for node in graph.node for out in node.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs, "no Conv to compare"
    for conv in convs:
        quantized = producers.get(conv.input[0]) is not None and producers[conv.input[0]].op_type == "DequantizeLinear"
        assert quantized == (conv.name not in result.float_layers), conv.name
    assert check_tensorrt_onnx(result.path).ok
