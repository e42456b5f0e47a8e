"""treefuse report: merges result files of several devices; missing cells stay missing; --verify walks the hash chain."""
import json

import pytest

from treefuse.cli import main
from report_fakes import device_record, make_sweep
from treefuse.files import sha256_file

pytest.importorskip("matplotlib", reason="report plots need matplotlib (pip install 'treefuse[report]')")


@pytest.fixture
def artifacts(tmp_path):
    weights, onnx = tmp_path / "w.safetensors", tmp_path / "m.onnx"
    weights.write_bytes(b"weights bytes")
    onnx.write_bytes(b"onnx bytes")
    return weights, onnx


def test_report_merges_devices_and_shows_missing_as_missing(tmp_path, artifacts):
    cpu = make_sweep(tmp_path, "cpu.json", *artifacts, skip_onnx_large=True)
    gpu = make_sweep(tmp_path, "gpu.json", *artifacts, gpu="NVIDIA H100")
    assert main(["report", str(cpu), str(gpu), "--out", str(tmp_path / "r"), "--note", "CPU shared <busy>"]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "> CPU shared <busy>" in md and "CPU shared &lt;busy&gt;" in (tmp_path / "r" / "report.html").read_text()
    assert "## Test CPU, 2 cores, AVX2" in md and "## NVIDIA H100" in md
    cpu_section = md.split("## Test CPU")[1].split("## NVIDIA")[0]
    latency_rows = [line for line in cpu_section.splitlines() if line.startswith("| onnx fp32")]
    assert latency_rows[0].endswith("| —|") or latency_rows[0].rstrip().endswith("— |")
    assert "| 0.00" not in cpu_section
    assert "| onnx fp32 | 4.00 | —" in cpu_section  # speed-up at 256: 40 / 10; 512 missing
    html = (tmp_path / "r" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # self-contained: plots inline, nothing fetched
    assert "<script src" not in html and "<link" not in html and "src='http" not in html


def test_verify_passes_then_trips_on_a_changed_or_missing_artifact(tmp_path, artifacts, capsys):
    result = make_sweep(tmp_path, "cpu.json", *artifacts)
    assert main(["report", str(result), "--out", str(tmp_path / "r")]) == 0
    report = tmp_path / "r" / "report.html"
    assert main(["report", "--verify", str(report), str(tmp_path / "r" / "report.md"), str(result)]) == 0
    artifacts[1].write_bytes(b"tampered onnx")
    assert main(["report", "--verify", str(report)]) == 1
    assert "changed" in capsys.readouterr().out
    artifacts[1].unlink()
    assert main(["report", "--verify", str(result)]) == 1
    assert "missing" in capsys.readouterr().out


def test_verify_trips_when_the_result_file_under_a_report_changed(tmp_path, artifacts):
    result = make_sweep(tmp_path, "cpu.json", *artifacts)
    assert main(["report", str(result), "--out", str(tmp_path / "r")]) == 0
    result.write_text(result.read_text().replace("95.0", "99.5"))
    assert main(["report", "--verify", str(tmp_path / "r" / "report.md")]) == 1


def test_verify_links_artifacts_to_named_or_shipped_weights_and_notes_the_rest(tmp_path, artifacts):
    from treefuse.report.verify import chain_checks

    from treefuse.checkpoint import DEFAULT_WEIGHTS

    checks = chain_checks([{"kind": "onnx", "path": "m.onnx", "sha256": "a" * 64, "source_sha256": "b" * 64},
                           {"kind": "onnx", "path": "s.onnx", "sha256": "c" * 64,
                            "source_sha256": sha256_file(DEFAULT_WEIGHTS)}])
    assert checks[0].status == "note" and not checks[0].failed and "does not name" in checks[0].detail
    assert checks[1].status == "ok" and "shipped weights" in checks[1].detail


@pytest.mark.parametrize("content", ['{"kind": "someone-else", "x": 1}', "not json",
                                     '{"kind": "treefuse-sweep", "format": "treefuse-sweep-v0"}',
                                     '{"kind": "treefuse-sweep", "format": "treefuse-sweep-v1"}'])
def test_foreign_or_old_result_files_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["report", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert main(["report", "--verify", str(bad)]) == 2
    assert not (tmp_path / "r").exists()
    assert len(capsys.readouterr().err.strip().splitlines()) == 2


def test_report_from_bench_and_parity_results(tmp_path, artifacts):
    weights, onnx = artifacts
    facts = {"kind": "onnx", "path": str(onnx), "sha256": sha256_file(onnx), "precision": "int8"}
    ref = {"kind": "torch", "path": str(weights), "sha256": sha256_file(weights), "precision": "fp32"}
    latency = {"p50": 5.0, "p90": 6.0, "p99": 6.0, "mean": 5.0, "min": 4.0}
    bench = {"kind": "treefuse-bench", "size": [256, 256], "device": device_record(),
             "backends": [{**facts, "latency_ms": latency, "throughput_img_per_s": 200.0}]}
    parity = {"kind": "treefuse-parity", "device": device_record(), "reference": ref, "candidate": facts, "passed": False,
              "output_psnr_db": {"min": 35.0, "mean": 38.0}}
    (tmp_path / "b.json").write_text(json.dumps(bench))
    (tmp_path / "p.json").write_text(json.dumps(parity))
    assert main(["report", str(tmp_path / "b.json"), str(tmp_path / "p.json"), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| onnx int8 | torch fp32 | 35.00 / 38.00 | — | — | 5.00 | FAILED (thresholds not recorded) |" in md


def test_real_sweep_to_report_to_verify_chain(tmp_path, weights_path, onnx_path, capsys):
    import shutil

    onnx = shutil.copy(onnx_path, tmp_path / "m.onnx")
    result = tmp_path / "sweep.json"
    assert main(["sweep", "--backend", f"torch:{weights_path}", "--backend", f"onnx:{onnx}", "--sizes", "16x16",
                 "--iters", "1", "--warmup", "0", "--json", str(result)]) == 0
    assert main(["report", str(result), "--out", str(tmp_path / "r")]) == 0
    assert main(["report", "--verify", str(tmp_path / "r" / "report.md")]) == 0
    assert "made from weights" in capsys.readouterr().out  # the ONNX points back at the weights by hash
    with open(onnx, "ab") as handle:
        handle.write(b"\0")
    assert main(["report", "--verify", str(tmp_path / "r" / "report.md")]) == 1


def test_two_backends_that_read_alike_stay_apart(tmp_path, artifacts):
    weights, onnx = artifacts
    other = tmp_path / "other.onnx"
    other.write_bytes(b"another onnx")
    data = json.loads(make_sweep(tmp_path, "cpu.json", weights, onnx).read_text())
    twin = {**data["backends"][1], "path": str(other), "sha256": sha256_file(other), "label": f"onnx:{other}"}
    data["backends"].append(twin)
    data["cells"].append({**data["cells"][1], "backend": twin["label"], "latency_ms": {**data["cells"][1]["latency_ms"], "p50": 20.0}})
    (tmp_path / "cpu.json").write_text(json.dumps(data))
    assert main(["report", str(tmp_path / "cpu.json"), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| onnx fp32 (m.onnx) | 10.00" in md and "| onnx fp32 (other.onnx) | 20.00" in md


def _bench_file(path, onnx, p50, created, evaluator=False):
    facts = {"kind": "onnx", "path": str(onnx), "sha256": sha256_file(onnx), "precision": "fp32",
             "latency_ms": {"p50": p50, "p90": p50 * (2 if p50 > 100 else 1.1)}, "throughput_img_per_s": 1000 / p50}
    if evaluator:
        facts.update(kind="coreml", evaluator="mil")
    path.write_text(json.dumps({"kind": "treefuse-bench", "size": [256, 256], "device": device_record(),
                                "backends": [facts], "provenance": {"created_utc": created}}))
    return path


def test_two_files_giving_one_cell_are_refused_unless_prefer_says_which_wins(tmp_path, artifacts, capsys):
    _, onnx = artifacts
    old = _bench_file(tmp_path / "old.json", onnx, 269.0, "2026-11-01T00:00:00+00:00")
    new = _bench_file(tmp_path / "new.json", onnx, 2001.0, "2026-11-20T00:00:00+00:00")
    assert main(["report", str(new), str(old), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "old.json" in err and "new.json" in err and "--prefer" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
    assert main(["report", str(new), str(old), "--prefer", "newest", "--out", str(tmp_path / "n")]) == 0
    assert "2001.00" in (tmp_path / "n" / "report.md").read_text()
    assert main(["report", str(new), str(old), "--prefer", "first", "--out", str(tmp_path / "f")]) == 0
    assert "2001.00" in (tmp_path / "f" / "report.md").read_text()
    assert main(["report", str(old), str(new), "--prefer", "first", "--out", str(tmp_path / "o")]) == 0
    assert "269.00" in (tmp_path / "o" / "report.md").read_text()


def test_unstable_and_evaluator_timings_are_marked_and_kept_out_of_ratios(tmp_path, artifacts):
    _, onnx = artifacts
    noisy = _bench_file(tmp_path / "noisy.json", onnx, 300.0, "2026-11-01T00:00:00+00:00")
    emulated = _bench_file(tmp_path / "emulated.json", onnx, 50.0, "2026-11-01T00:00:00+00:00", evaluator=True)
    assert main(["report", str(noisy), str(emulated), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "300.00 (p90 600.00) unstable" in md and "evaluator" in md


def test_evaluate_results_enter_the_report_and_parity_verdicts_show_their_thresholds(tmp_path, artifacts):
    from treefuse.gates import gates_for
    from treefuse.results import EvaluateResult, ParityResult

    weights, onnx = artifacts
    facts = {"kind": "onnx", "path": str(onnx), "sha256": sha256_file(onnx), "precision": "int8"}
    ref = {"kind": "torch", "path": str(weights), "sha256": sha256_file(weights), "precision": "fp32"}
    evaluation = EvaluateResult(device=device_record(), backend=facts, data="pairs/", count=5,
                                mean={"psnr_y_db": 24.12, "ssim_y": 0.824, "input_psnr_y_db": 13.85})
    parity = ParityResult(device=device_record(), reference=ref, candidate=facts, passed=True,
                          gates=gates_for("int8").to_json(), output_psnr_db={"min": 41.0, "mean": 44.0})
    (tmp_path / "e.json").write_text(json.dumps(evaluation.to_json()))
    (tmp_path / "p.json").write_text(json.dumps(parity.to_json()))
    assert main(["report", str(tmp_path / "e.json"), str(tmp_path / "p.json"), "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| onnx int8 | pairs/ | 5 | 24.12 | 0.8240 | 13.85 |" in md
    assert "passed (>= 35 dB, drop <= 0.1 dB, worst image <= 0.4 dB, int8 gates)" in md


def test_parity_results_written_before_the_worst_image_gate_still_report_and_verify(tmp_path, artifacts):
    from treefuse.results import ParityResult

    weights, onnx = artifacts
    facts = {"kind": "onnx", "path": str(onnx), "sha256": sha256_file(onnx), "precision": "int8"}
    ref = {"kind": "torch", "path": str(weights), "sha256": sha256_file(weights), "precision": "fp32"}
    old_gates = {"min_output_psnr_db": 35.0, "max_task_drop_db": 0.1, "require_finite": True, "precision": "int8"}
    data = ParityResult(device=device_record(), reference=ref, candidate=facts, passed=True, gates=old_gates,
                        output_psnr_db={"min": 41.0, "mean": 44.0}).to_json()
    del data["worst_image"]  # as written before the field existed
    (tmp_path / "p.json").write_text(json.dumps(data))
    assert main(["report", str(tmp_path / "p.json"), "--out", str(tmp_path / "r")]) == 0
    assert "passed (>= 35 dB, drop <= 0.1 dB, int8 gates)" in (tmp_path / "r" / "report.md").read_text()
    assert main(["report", "--verify", str(tmp_path / "p.json")]) == 0
