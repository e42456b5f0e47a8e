"""`treefuse export onnx --precision fp16|int8` end to end on a tiny network."""
from __future__ import annotations

import json

import onnx
import pytest

from treefuse.cli import main

from media import write_images


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("calib")
    images = write_images(root / "images", 3)
    assert main(["calib", "build", "--images", str(images), "--count", "3", "--size", "32x32", "--out",
                 str(root / "set")]) == 0
    return root / "set"


def precision_of(path):
    return {p.key: p.value for p in onnx.load(str(path)).metadata_props}["precision"]


def test_int8_without_calib_is_one_line_exit_2(tiny_weights, tmp_path, capsys):
    out = tmp_path / "m.onnx"
    assert main(["export", "onnx", "--weights", str(tiny_weights), "--precision", "int8", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--calib" in err and len(err.splitlines()) == 1 and not out.exists()


def test_fp16_and_fp32(tiny_weights, tmp_path):
    assert main(["export", "onnx", "--weights", str(tiny_weights), "--precision", "fp16",
                 "--out", str(tmp_path / "h.onnx")]) == 0
    assert precision_of(tmp_path / "h.onnx") == "fp16"
    assert main(["export", "onnx", "--weights", str(tiny_weights), "--out", str(tmp_path / "f.onnx")]) == 0
    assert not any(n.op_type == "Cast" for n in onnx.load(str(tmp_path / "f.onnx")).graph.node)


def test_int8_with_budget(tiny_weights, calib_dir, paired_dir, tmp_path, capsys):
    out = tmp_path / "m8.onnx"
    assert main(["export", "onnx", "--weights", str(tiny_weights), "--precision", "int8", "--calib", str(calib_dir),
                 "--calib-method", "percentile", "--paired-images", str(paired_dir), "--max-task-drop", "3",
                 "--max-worst-task-drop", "2.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "task PSNR" in printed and "sensitivity table" in printed
    assert precision_of(out) == "int8"
    table = json.loads((tmp_path / "m8.sensitivity.json").read_text())
    assert table["max_task_drop_db"] == 3.0 and table["max_worst_task_drop_db"] == 2.5
    record = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["treefuse_provenance"])
    assert record["verification"]["gates"]["max_worst_task_drop_db"] == 2.5  # the final check judged by it too


@pytest.mark.parametrize("flag", ["--max-task-drop", "--max-worst-task-drop"])
@pytest.mark.parametrize("budget", ["-50", "nan", "inf", "51", "lots"])
def test_a_nonsense_budget_is_bad_input_nothing_written(tiny_weights, calib_dir, paired_dir, tmp_path, capsys,
                                                        flag, budget):
    out = tmp_path / "m8.onnx"
    assert main(["export", "onnx", "--weights", str(tiny_weights), "--precision", "int8", "--calib", str(calib_dir),
                 "--paired-images", str(paired_dir), flag, budget, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"error: {flag}" in err, err
    assert ("finite number" if budget != "lots" else "must be a number of dB") in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("target, qat_target", [("onnxruntime", "ort-qdq"), ("tensorrt", "trt-qdq")])
def test_a_miss_with_paired_images_names_the_qat_route_not_paired_images(tiny_weights, calib_dir, paired_dir, tmp_path,
                                                                        capsys, monkeypatch, target, qat_target):
    from treefuse import gates
    from treefuse.export.onnx import quantize

    # A floor no INT8 model reaches, and no layer the search may keep in float (with every conv float the
    # TensorRT layout is the FP32 model itself): the user already gave --paired-images, so the advice is
    # the QAT route for the target, not that flag again.
    monkeypatch.setitem(gates.DEFAULT_GATES, "int8", gates.Gates(199.0, 0.1, 0.4, precision="int8"))
    monkeypatch.setattr(quantize, "conv_layers", lambda path: [])
    out = tmp_path / "m8.onnx"
    assert main(["export", "onnx", "--weights", str(tiny_weights), "--precision", "int8", "--calib", str(calib_dir),
                 "--paired-images", str(paired_dir), "--target", target, "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "199" in err and "treefuse qat" in err and f"--target {qat_target}" in err
    assert "--paired-images" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_export_that_misses_the_int8_gate_fails_exit_1_nothing_written(tiny_weights, calib_dir, tmp_path, capsys,
                                                                         monkeypatch):
    from treefuse import gates

    # A floor no INT8 model reaches: export's own check must trip, with parity's code and gate table.
    monkeypatch.setitem(gates.DEFAULT_GATES, "int8", gates.Gates(199.0, 0.1, precision="int8"))
    out = tmp_path / "m8.onnx"
    assert main(["export", "onnx", "--weights", str(tiny_weights), "--precision", "int8", "--calib", str(calib_dir),
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "misses its gates" in err and "199" in err and "treefuse qat" in err
    assert "add --paired-images" in err  # not given: keeping sensitive layers in float is still untried
    assert list(tmp_path.iterdir()) == []
