"""`treefuse benchmark`: the matrix, parity with default gates, one interleaved timing, one table, report-ready JSON."""
from __future__ import annotations

import json

import torch

from treefuse.checkpoint import save_weights
from treefuse.cli import main
from treefuse.config import ModelConfig
from treefuse.export.onnx.exporter import export_onnx
from treefuse.gates import gates_for
from treefuse.model import TreeFusionNet
from treefuse.results import BenchResult, ParityResult
from treefuse.runtimes.measurements.benchmark import format_benchmark_table, run_benchmark


def test_cli_runs_onnx_and_lists_what_cannot_run(weights_path, paired_dir, tmp_path, capsys):
    out = tmp_path / "bench"
    code = main(["benchmark", "--weights", str(weights_path), "--images", str(paired_dir), "--formats", "onnx,trt",
                 "--size", "32x32", "--warmup", "0", "--iters", "2", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    summary = json.loads((out / "benchmark.json").read_text())
    rows = {(r["format"], r["precision"]): r for r in summary["rows"]}
    assert rows["torch", "fp32"]["verdict"] == "reference" and rows["onnx", "fp32"]["verdict"] == "pass"
    assert rows["onnx", "fp32"]["output_psnr_db"] >= gates_for("fp32").min_output_psnr_db
    assert rows["onnx", "fp32"]["task_psnr_db"] is not None
    assert "calibration" in rows["onnx", "int8"]["reason"] and rows["trt", "fp16"]["verdict"] == "not run"
    assert "not run:" in printed and "CPU:" in printed
    # What `treefuse report` reads today: a bench record and one parity record per artifact.
    BenchResult.from_json(json.loads((out / "bench.json").read_text()))
    ParityResult.from_json(json.loads((out / "parity" / "onnx-fp32.json").read_text()))
    # A second run reuses the artifact its record vouches for instead of exporting again.
    main(["benchmark", "--weights", str(weights_path), "--images", str(paired_dir), "--formats", "onnx",
          "--size", "32x32", "--warmup", "0", "--iters", "1", "--out", str(out)])
    assert "reusing" in capsys.readouterr().out


def test_an_export_refused_by_its_own_gate_is_a_miss_in_a_complete_table(weights_path, paired_dir, tmp_path,
                                                                         monkeypatch, capsys):
    from treefuse.export import verify
    from treefuse.gates import MAX_PSNR_DB, Gates

    monkeypatch.setattr(verify, "gates_for", lambda precision: Gates(MAX_PSNR_DB, 0.0, precision=precision))
    out = tmp_path / "bench"
    args = ["benchmark", "--weights", str(weights_path), "--images", str(paired_dir), "--formats", "onnx",
            "--size", "32x32", "--warmup", "0", "--iters", "1", "--out", str(out)]
    assert main(args) == 0  # the table is complete: the miss is in it, not an exit code nobody asked for
    printed = capsys.readouterr()
    assert "missed: onnx fp32: check the source weights" in printed.out and printed.err == ""
    cells = {(c["kind"], c["precision"]): c for c in json.loads((out / "benchmark.json").read_text())["cells"]}
    assert cells["onnx", "fp32"]["gate_failed"] and not cells["onnx", "int8"]["gate_failed"]
    assert main([*args, "--require-pass"]) == 1 and "onnx fp32" in capsys.readouterr().err
    assert main([*args, "--require-pass", "onnx:fp64"]) == 2 and "KIND:PRECISION" in capsys.readouterr().err


def test_an_artifact_of_other_weights_fails_its_row(weights_path, paired_dir, tmp_path):
    torch.manual_seed(7)
    other = save_weights(TreeFusionNet(ModelConfig()), tmp_path / "other.safetensors")
    onnx_path = export_onnx(other, tmp_path / "other.onnx")
    cells = [{"kind": "onnx", "precision": "fp32", "spec": f"onnx:{onnx_path}", "path": str(onnx_path)},
             {"kind": "trt", "precision": "int8", "reason": "needs an NVIDIA GPU; none here"}]
    result = run_benchmark(f"torch:{weights_path}", cells, paired_dir, (24, 24), warmup=0, iters=1)
    onnx_row = result["rows"][1]
    assert onnx_row["verdict"].startswith("FAIL") and "output PSNR" in onnx_row["verdict"]
    assert onnx_row["worst_task_drop_db"] >= onnx_row["task_drop_db"] and onnx_row["worst_image"].endswith(".png")
    table = format_benchmark_table(result["rows"])
    assert "FAIL" in table and "needs an NVIDIA GPU" in table and "worst dB" in table


def test_bad_arguments_are_one_line_errors(paired_dir, tmp_path, capsys):
    assert main(["benchmark", "--images", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "not a paired folder" in capsys.readouterr().err
    assert main(["benchmark", "--images", str(paired_dir), "--formats", "onnx,tflite", "--out", str(tmp_path / "o")]) == 2
    assert "unknown format" in capsys.readouterr().err
