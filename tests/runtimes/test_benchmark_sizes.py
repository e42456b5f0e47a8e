"""`treefuse benchmark` for the report: several sizes, artifact size and peak memory per backend (own process),
and OpenVINO bf16 only where the CPU has bf16 (decided from the CPU flags, faked here, never timed)."""
from __future__ import annotations

import json

import pytest

from treefuse.cli import main
from treefuse.runtimes.measurements.benchmark import hinted_cells
from treefuse.runtimes.measurements.memory import OWN_PROCESS, peak_memory_in_own_process

FP32_CELL = {"kind": "openvino", "precision": "fp32", "spec": "openvino:out/model.fp32.onnx",
             "path": "out/model.fp32.onnx", "reason": None, "route": "ptq"}


@pytest.mark.parametrize("flags", [["avx512_bf16"], ["amx_bf16", "avx512f"]])
def test_openvino_bf16_runs_the_fp32_file_where_the_cpu_has_bf16(flags):
    [cell] = hinted_cells([FP32_CELL], flags)
    assert (cell["kind"], cell["precision"]) == ("openvino", "bf16") and cell["reason"] is None
    assert cell["spec"] == "openvino:out/model.fp32.onnx?precision=bf16" and cell["path"] == "out/model.fp32.onnx"


def test_openvino_bf16_is_not_run_on_a_cpu_without_bf16_and_says_so():
    [cell] = hinted_cells([FP32_CELL], ["avx2", "fma", "avx512f", "avx512_vnni"])
    assert cell["spec"] is None and cell["reason"] == "not on this CPU (no avx512_bf16/amx_bf16)"
    [unmade] = hinted_cells([{**FP32_CELL, "spec": None, "reason": "openvino not installed"}], ["amx_bf16"])
    assert "not made (openvino not installed)" in unmade["reason"]
    assert hinted_cells([{**FP32_CELL, "kind": "onnx"}], ["amx_bf16"]) == []  # only rows whose table says so


def test_peak_memory_in_own_process_is_a_figure_or_an_error_never_made_up(onnx_path, tmp_path):
    found = peak_memory_in_own_process(f"onnx:{onnx_path}", (1, 3, 32, 32), threads=1)
    assert found["rss_method"] == OWN_PROCESS and found["peak_rss_mib"] > found["peak_rss_delta_mib"] >= 0
    assert "error" in peak_memory_in_own_process(f"onnx:{tmp_path / 'missing.onnx'}", (1, 3, 32, 32))


@pytest.mark.slow
def test_sizes_memory_and_the_bf16_row_reach_the_report(weights_path, paired_dir, tmp_path, monkeypatch, capsys):
    pytest.importorskip("openvino", reason="OpenVINO rows need openvino (pip install 'treefuse[openvino]')")
    import treefuse.device

    real = treefuse.device.cpu_facts()
    monkeypatch.setattr(treefuse.device, "cpu_facts", lambda: {**real, "isa_flags": ["avx2", "fma"]})
    out = tmp_path / "bench"
    assert main(["benchmark", "--weights", str(weights_path), "--images", str(paired_dir), "--formats", "openvino",
                 "--size", "32x32", "--sizes", "24x24,32x32", "--warmup", "0", "--iters", "1", "--threads", "1",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "bf16" in printed and "not on this CPU (no avx512_bf16/amx_bf16)" in printed
    bench = json.loads((out / "bench.json").read_text())
    assert all(b["memory"]["rss_method"] == OWN_PROCESS and b["file_bytes"] > 0 for b in bench["backends"])
    assert json.loads((out / "bench-24x24.json").read_text())["size"] == [24, 24]
    assert not (out / "bench-32x32.json").exists()  # --size is bench.json
    files = [str(p) for p in [out / "bench.json", out / "bench-24x24.json", *sorted((out / "parity").glob("*.json"))]]
    assert main(["report", *files, "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    verdict = md.split("Ship:")[0]
    assert "peak memory, MiB" in verdict and "| openvino fp32 | passed" in verdict
    assert "No 'Latency vs resolution' plot" not in md  # two sizes: the plot is drawn


def test_sweep_reads_memory_per_backend_in_its_own_process_when_asked(weights_path, onnx_path, tmp_path):
    result = tmp_path / "sweep.json"
    assert main(["sweep", "--backend", f"onnx:{onnx_path}", "--sizes", "16x16", "--iters", "1", "--warmup", "0",
                 "--memory", "own-process", "--json", str(result)]) == 0
    [cell] = json.loads(result.read_text())["cells"]
    assert cell["memory"]["rss_method"] == OWN_PROCESS and cell["memory"]["peak_rss_mib"] > 0
