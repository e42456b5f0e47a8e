"""A report answers first: a verdict table per device with which engine to ship, plots only from two or more
points, provenance last and folded."""
import json
import re

import pytest

from treefuse.cli import main
from treefuse.files import sha256_file
from treefuse.report.verdict import Verdict, artifact_bytes, recommendation
from report_fakes import make_sweep

pytest.importorskip("matplotlib", reason="report plots need matplotlib (pip install 'treefuse[report]')")


@pytest.fixture
def artifacts(tmp_path):
    weights, onnx = tmp_path / "w.safetensors", tmp_path / "m.onnx"
    weights.write_bytes(b"weights bytes")
    onnx.write_bytes(b"onnx bytes" * 100)
    return weights, onnx


def _row(backend, status, p50, size_bytes, timing="device"):
    return Verdict(backend, status, "", None, None, p50, timing, size_bytes, None)


def test_recommendation_is_the_fastest_and_the_smallest_that_pass_every_gate():
    rows = [_row("torch fp32", "reference", 100.0, 10), _row("onnx int8", "FAILED", 5.0, 100),
            _row("onnx fp32", "passed", 40.0, 3000), _row("litert int8", "passed", 60.0, 1024),
            _row("coreml fp16", "passed", 1.0, 10, timing="evaluator")]
    line = recommendation(rows)
    assert "fastest passing every gate: **onnx fp32** (40.0 ms" in line  # not the faster failing or evaluated rows
    assert "smallest passing every gate: **coreml fp16** (0 KB)" in line  # size needs no device timing
    assert recommendation([_row("onnx int8", "FAILED", 5.0, 100)]) == "no engine passes every gate on this device"
    close = recommendation(rows + [_row("openvino fp32", "passed", 41.9, 3000)])
    assert "**onnx fp32** (40.0 ms p50), openvino fp32 within 5%" in close and "litert int8 within" not in close
    noisy = Verdict("onnx fp32", "passed", "", None, None, 40.0, "device", 3000, None, unstable=True)
    assert "(40.0 ms p50, an unstable timing" in recommendation([noisy])
    emulated = recommendation([_row("onnx fp32", "passed", 5.0, None, timing="emulated")])
    assert "not timed on the device" in emulated and "smallest: not known" in emulated


def test_reports_open_on_the_verdict_table_and_end_on_folded_provenance(tmp_path, artifacts):
    cpu = make_sweep(tmp_path, "cpu.json", *artifacts)
    gpu = make_sweep(tmp_path, "gpu.json", *artifacts, gpu="NVIDIA H100")
    assert main(["report", str(cpu), str(gpu), "--out", str(tmp_path / "r"), "--note", "shared CPU"]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    first_table = md.index("\n| ")
    assert md[first_table:].startswith("\n| engine | gates | task PSNR change")
    assert md.index("Verdict on Test CPU") < md.index("Verdict on NVIDIA H100") < md.index("**Latency p50")
    assert "Ship: fastest passing every gate: **onnx fp32** (41.0 ms p50)" in md
    assert "| onnx fp32 | passed (thresholds not recorded) | 0.000 / — | 41.0 | 1 |\n" in md
    provenance = md[md.index("## Provenance"):]
    assert md.rindex("\n## ") == md.index("\n## Provenance")  # nothing after it but the folded details
    short = provenance.split("<details>")[0].strip().splitlines()[1:]
    assert [line.split(" [")[0] for line in short if line] == ["- Test CPU, 2 cores, AVX2", "- NVIDIA H100"]
    assert "cpu.json: treefuse-sweep on" in provenance.split("<details>")[1]
    html = (tmp_path / "r" / "report.html").read_text()
    assert re.search(r"<table[^>]*>", html).group(0) == "<table class='verdict'>"  # the first table
    assert html.index("</details>") > html.index("cpu.json: treefuse-sweep")


def test_a_resolution_plot_needs_two_resolutions_and_a_plot_two_points(tmp_path, artifacts):
    from treefuse.report.grid import build_grids
    from treefuse.report.plots import device_plots
    from treefuse.report.results import load_result

    two_sizes = build_grids([load_result(make_sweep(tmp_path, "a.json", *artifacts))])[0]
    plots, notes = device_plots(two_sizes)
    assert [p.title for p in plots] == ["Latency vs resolution", "Speed-up vs PyTorch FP32"]
    assert all(p.points >= 2 and p.png.startswith(b"\x89PNG") for p in plots)
    assert notes == ["No 'Quality vs latency' plot: fewer than two engines have both a parity result and a latency "
                     "timed on the device."]
    data = json.loads((tmp_path / "a.json").read_text())
    data["cells"] = [c for c in data["cells"] if c["size"] == [512, 512]]
    (tmp_path / "b.json").write_text(json.dumps(data))
    one_size = build_grids([load_result(tmp_path / "b.json")])[0]
    plots, notes = device_plots(one_size)
    assert "Latency vs resolution" not in [p.title for p in plots]
    assert any("timed at one resolution (512x512)" in n and "--sizes" in n for n in notes)


def test_peak_memory_is_shown_only_when_measured_per_engine_else_dropped_with_a_note(tmp_path, artifacts):
    from treefuse.runtimes.measurements.memory import OWN_PROCESS

    data = json.loads(make_sweep(tmp_path, "cpu.json", *artifacts).read_text())
    shared = main(["report", str(tmp_path / "cpu.json"), "--out", str(tmp_path / "shared")])
    for cell in data["cells"]:
        cell["memory"]["rss_method"] = OWN_PROCESS
    (tmp_path / "own.json").write_text(json.dumps(data))
    for cell in data["cells"]:
        del cell["memory"]
    (tmp_path / "none.json").write_text(json.dumps(data))
    assert shared == main(["report", str(tmp_path / "own.json"), "--out", str(tmp_path / "own")]) == \
        main(["report", str(tmp_path / "none.json"), "--out", str(tmp_path / "none")]) == 0
    verdicts = {name: (tmp_path / name / "report.md").read_text().split("## Test CPU")[0]
                for name in ("shared", "own", "none")}
    assert "| 41.0 | 1 | 300 |" in verdicts["own"] and "peak memory, MiB" in verdicts["own"]
    assert "peak memory, MiB" not in verdicts["shared"] and "every backend loaded in one process" in verdicts["shared"]
    assert "peak memory, MiB" not in verdicts["none"] and "not measured in these result files" in verdicts["none"]
    assert "Peak resident memory" not in (tmp_path / "none" / "report.md").read_text()  # no table of '—' either


def test_artifact_size_comes_from_the_result_or_from_the_file_only_while_its_hash_matches(tmp_path, artifacts):
    _, onnx = artifacts
    facts = {"path": str(onnx), "sha256": sha256_file(onnx)}
    assert artifact_bytes({**facts, "file_bytes": 7}) == 7
    assert artifact_bytes(facts) == 1000
    onnx.write_bytes(b"another model")
    assert artifact_bytes(facts) is None  # the file there now is not the one measured
    assert artifact_bytes({"path": str(tmp_path / "gone.onnx"), "sha256": "0" * 64}) is None


def test_the_verdict_reads_latency_at_the_size_asked_for(tmp_path, artifacts):
    cpu = make_sweep(tmp_path, "cpu.json", *artifacts)
    assert main(["report", str(cpu), "--size", "256x256", "--out", str(tmp_path / "r")]) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "p50 at 256x256, ms" in md and "Ship: fastest passing every gate: **onnx fp32** (10.0 ms p50)" in md
