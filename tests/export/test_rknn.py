"""Rockchip RKNN: export through rknn-toolkit2 in its own venv, the simulator runner, the board bundle (its
refusal without an NPU, and its run on the simulator with the toolkit's Python).

The toolkit's tests skip with a reason without .venv-rknn (`make install-rknn`); they use 4-channel
weights at the paired images' 40x56 (a build takes seconds). The pure pieces (the toolkit's table
parsed, the device tree read, the layers chosen for float16) run everywhere.
"""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from treefuse.cli import main
from treefuse.export.rknn.board_engine import rockchip_soc
from treefuse.export.rknn.exporter import most_blamed
from treefuse.export.rknn.worker import parse_error_analysis
from treefuse.runtimes.backends.rknn_runner import toolkit_missing

needs_toolkit = pytest.mark.skipif(toolkit_missing() is not None, reason=f"{toolkit_missing()}")
slow = pytest.mark.slow  # each runs the toolkit (2 s to import) and its simulator: 10-20 s on 2 cores
SIZE = ["--size", "40x56"]  # the paired images' size: the NPU's input is static

ANALYSIS = """layer_name      simulator_error
[Input] input                                 1.00000 | 0.00000   1.00000 | 0.00000
[exDataConvert] input_int8                    1.00000 | 0.12536   1.00000 | 0.12536
[Conv] /head/Conv_output_0
[Relu] /Relu_output_0                         0.99997 | 0.53153   0.99997 | 0.53153
[Relu] /blocks.0/pairs.1/Relu_output_0        0.99974 | 0.96194   0.99894 | 0.43746
[Add] output_int8                             0.99997 | 0.46938   0.99999 | 0.20395
"""


def test_the_toolkits_layer_table_is_read_and_its_worst_layers_kept_float16():
    rows = parse_error_analysis(ANALYSIS)
    assert [row["tensor"] for row in rows] == ["input", "input_int8", "/Relu_output_0",
                                               "/blocks.0/pairs.1/Relu_output_0", "output_int8"]  # fused rows: no figures
    assert rows[3]["single_cos"] == 0.99894 and rows[3]["entire_euc"] == 0.96194
    assert most_blamed({"layers": rows}, 2) == ["/blocks.0/pairs.1/Relu_output_0", "/Relu_output_0"]  # not the input


def test_only_a_rockchip_device_tree_names_an_soc(tmp_path):
    tree = tmp_path / "compatible"
    tree.write_bytes(b"radxa,rock-5b\0rockchip,rk3588\0")
    assert rockchip_soc(tree) == "rk3588"
    tree.write_bytes(b"raspberrypi,4-model-b\0brcm,bcm2711\0")
    assert rockchip_soc(tree) is None
    assert rockchip_soc(tmp_path / "absent") is None  # x86: no device tree at all


def test_simulator_latency_is_named_so_and_kept_out_of_comparisons():
    from treefuse.portable.device_run import _runtime_version
    from treefuse.report.results import timing_kind

    assert _runtime_version("rknn-toolkit2 2.5.0 simulator on x86, not the NPU (rk3588)") == {"rknn-toolkit2": "2.5.0"}
    assert _runtime_version("rknn-toolkit-lite2 on rk3588") == {"rknn-toolkit-lite2": "unknown"}
    assert timing_kind({"timing": "simulated", "simulated": True}) == "simulated"  # only 'device' enters ratios
    assert timing_kind({"timing": "device"}) == "device"


@pytest.fixture(scope="module")
def fp16_rknn(tiny_coreml_weights, tmp_path_factory):
    if toolkit_missing():
        pytest.skip(toolkit_missing())
    out = tmp_path_factory.mktemp("rknn") / "m.rknn"
    assert main(["export", "rknn", "--weights", str(tiny_coreml_weights), *SIZE, "--out", str(out)]) == 0
    return out


@slow
@needs_toolkit
def test_fp16_export_writes_the_model_its_record_and_the_simulators_recipe(fp16_rknn, tiny_coreml_weights, paired_dir,
                                                                          tmp_path, capsys):
    sidecar = json.loads((fp16_rknn.parent / "m.rknn.json").read_text())
    rknn = sidecar["provenance"]["rknn"]
    assert sidecar["metadata"]["treefuse.target"] == "rk3588" and rknn["size"] == [40, 56] and rknn["mode"] == "float"
    assert sidecar["provenance"]["tool_versions"]["rknn-toolkit2"] == "2.5.0"
    assert (fp16_rknn.parent / "m.rknn.sim" / "model.onnx").is_file()
    assert main(["parity", "--ref", f"torch:{tiny_coreml_weights}", "--cand", f"rknn:{fp16_rknn}", "--images",
                 str(paired_dir), "--json", str(tmp_path / "p.json")]) == 0
    result = json.loads((tmp_path / "p.json").read_text())
    assert result["gates"]["precision"] == "fp16" and result["candidate"]["simulated"] is True
    assert "not the NPU's" in result["candidate"]["latency_note"]


@slow
@needs_toolkit
def test_a_changed_recipe_is_refused_in_one_line(fp16_rknn, paired_dir, tmp_path, capsys):
    import shutil

    copy = tmp_path / "m.rknn"
    for name in ("m.rknn", "m.rknn.json"):
        shutil.copyfile(fp16_rknn.parent / name, tmp_path / name)
    shutil.copytree(fp16_rknn.parent / "m.rknn.sim", tmp_path / "m.rknn.sim")
    with open(tmp_path / "m.rknn.sim" / "model.onnx", "ab") as model:
        model.write(b"\0")
    code = main(["derain", "--backend", f"rknn:{copy}", str(paired_dir / "rain" / "000.png"), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "changed since export" in err and err.count("\n") == 1


def test_a_toolkit_crash_is_one_line_naming_the_platform(tiny_coreml_weights, tmp_path, capsys, monkeypatch):
    # The toolkit's process dying of SIGSEGV (as rknn-toolkit2 2.5.0 does building some models for rv1106, FACTS.md),
    # faked at the process boundary: a "toolkit Python" that kills itself with that signal.
    crashing = tmp_path / "python"
    crashing.write_text("#!/bin/sh\nkill -SEGV $$\n")
    crashing.chmod(0o755)
    monkeypatch.setenv("TREEFUSE_RKNN_PYTHON", str(crashing))
    out = tmp_path / "out" / "m.rknn"
    code = main(["export", "rknn", "--weights", str(tiny_coreml_weights), *SIZE, "--platform", "rv1106",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "crashed (SIGSEGV)" in err and "rv1106" in err
    assert not out.parent.exists() or not list(out.parent.iterdir())  # no model, no recipe, no staging debris


@pytest.fixture(scope="module")
def rknn_bundle(fp16_rknn, tiny_coreml_weights, paired_dir, tmp_path_factory):
    bundle = tmp_path_factory.mktemp("rknn-bundle") / "bundle"
    assert main(["pack", f"rknn:{fp16_rknn}", "--images", str(paired_dir), "--count", "2", "--sizes", "40x56",
                 "--ref", f"torch:{tiny_coreml_weights}", "--out", str(bundle)]) == 0
    return bundle


@slow
@needs_toolkit
def test_pack_carries_the_simulators_recipe_its_record_and_the_code_that_rebuilds_it(rknn_bundle, fp16_rknn):
    files = json.loads((rknn_bundle / "manifest.json").read_text())["files"]
    recipe = json.loads((fp16_rknn.parent / "m.rknn.json").read_text())["provenance"]["rknn"]["recipe_sha256"]
    assert recipe and all(files[f"artifact/m.rknn.sim/{name}"] == digest for name, digest in recipe.items())
    assert "artifact/m.rknn.json" in files
    assert {"bundle_runner/rknn_engine.py", "bundle_runner/simulator.py", "bundle_runner/toolkit_qdq.py"} <= set(files)


@slow
@needs_toolkit
def test_the_board_bundle_refuses_without_a_rockchip_npu_or_the_toolkit(rknn_bundle, tmp_path):
    # the bundle as the device runs it: another process, numpy only, no fakes; this machine has no NPU
    done = subprocess.run([sys.executable, str(rknn_bundle / "run.py"), "--json", str(tmp_path / "r.json")],
                          capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith("run.py: error: no Rockchip NPU found") and done.stderr.count("\n") == 1
    assert f".venv-rknn/bin/python {rknn_bundle}/run.py" in done.stderr  # how to judge it on the simulator
    assert not (tmp_path / "r.json").exists()


@slow
@needs_toolkit
def test_the_bundle_judged_on_the_simulator_gives_the_desktop_runners_numbers(rknn_bundle, fp16_rknn, tmp_path,
                                                                              capsys):
    import numpy as np

    from treefuse.report.verify import verify
    from treefuse.runtimes.backends.registry import make_runner
    from treefuse.runtimes.backends.rknn_runner import toolkit_python

    result = tmp_path / "home" / "r.json"
    done = subprocess.run([toolkit_python(), str(rknn_bundle / "run.py"), "--json", str(result), "--iters", "1",
                           "--save-outputs", str(tmp_path / "outputs.npz")], capture_output=True, text=True,
                          cwd=tmp_path)
    assert done.returncode == 0 and done.stderr == "", done.stderr  # the toolkit's chatter stays in its log
    assert "SIMULATOR latency: rknn-toolkit2 simulator on x86, not the NPU" in done.stdout
    parity = json.loads(result.read_text())
    bench = json.loads(result.with_name("r.bench.json").read_text())
    assert parity["passed"] and parity["candidate"]["backend"].startswith("rknn-toolkit2 2.5.0 simulator on x86, "
                                                                          "not the NPU (rk3588)")
    assert parity["device"]["simulator"] == "rknn-toolkit2 simulator on x86, not the NPU"
    for ran in (parity["candidate"], bench["backends"][0]):
        assert ran["timing"] == "simulated" and ran["simulated"] is True and "not the device's" in ran["latency_note"]
    with np.load(rknn_bundle / "golden.npz", allow_pickle=False) as golden, \
            np.load(tmp_path / "outputs.npz", allow_pickle=False) as outputs, make_runner(f"rknn:{fp16_rknn}") as desktop:
        for index in range(2):
            rainy = golden[f"input_{index:03d}"].astype(np.float32) / 255.0
            expected = desktop.infer(np.ascontiguousarray(rainy.transpose(2, 0, 1)[None]))[0].transpose(1, 2, 0)
            np.testing.assert_array_equal(outputs[f"output_{index:03d}"], expected)
    checks = verify([result, result.with_name("r.bench.json")], (rknn_bundle,))
    assert checks and not any(check.failed for check in checks), checks
    notes = [check.detail for check in checks if check.status == "note"]
    assert len(notes) == 2 and all("simulator on x86, not the NPU" in note for note in notes)  # parity and bench
    assert main(["report", str(result), str(result.with_name("r.bench.json")), "--out", str(tmp_path / "report")]) == 0
    capsys.readouterr()
    assert "simulated" in next((tmp_path / "report").glob("*.md")).read_text()


@pytest.fixture(scope="module")
def calib_40x56(paired_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("rknn-calib") / "calib"
    assert main(["calib", "build", "--images", str(paired_dir / "rain"), "--count", "2", "--size", "40x56",
                 "--out", str(out)]) == 0
    return out


@slow
@needs_toolkit
def test_float16_layers_are_the_ones_the_accuracy_analysis_blames(tiny_coreml_weights, calib_40x56, tmp_path):
    out = tmp_path / "m.rknn"
    assert main(["export", "rknn", "--weights", str(tiny_coreml_weights), *SIZE, "--precision", "int8",
                 "--calib", str(calib_40x56), "--float16-layers", "2", "--out", str(out)]) == 0
    kept = json.loads((tmp_path / "m.rknn.json").read_text())["provenance"]["rknn"]["float16_layers"]
    table = json.loads((tmp_path / "m.rknn.layers.json").read_text())["layers"]
    assert len(kept) == 2 and kept == most_blamed({"layers": table}, 2)
    config = (tmp_path / "m.rknn.sim" / "quantization.cfg").read_text()
    assert all(f"    {name}: float16\n" in config for name in kept)  # what the simulator and the board both run


@slow
@needs_toolkit
def test_an_int8_miss_names_the_npus_float16_route_before_qat(tiny_coreml_weights, calib_40x56, tmp_path,
                                                              monkeypatch, capsys):
    from treefuse.export import verify
    from treefuse.gates import MAX_PSNR_DB, Gates

    monkeypatch.setattr(verify, "gates_for", lambda precision: Gates(MAX_PSNR_DB, 0.0, precision="int8"))
    out = tmp_path / "m.rknn"
    code = main(["export", "rknn", "--weights", str(tiny_coreml_weights), *SIZE, "--precision", "int8",
                 "--calib", str(calib_40x56), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "misses its gates" in err and err.count("\n") == 1
    assert "--float16-layers 4" in err and err.index("--float16-layers") < err.index("treefuse qat")
    assert not list(tmp_path.iterdir())  # no model, no recipe, no sidecar
