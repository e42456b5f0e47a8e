"""End-to-end CLI checks, including the bad inputs a new user makes."""
import json
import subprocess
import sys

import pytest

from treefuse.cli import COMMANDS, main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "treefuse", *map(str, args)], capture_output=True, text=True)


def assert_one_line_error(result):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len([line for line in result.stderr.splitlines() if line.strip()]) <= 3, result.stderr


def test_help_lists_every_stage():
    result = run_cli("--help")
    for name in ["train", "evaluate", "export", "calib", "parity", "bench", "report", "derain", "info"]:
        assert name in result.stdout and name in COMMANDS


def test_info_json_names_existing_default_weights(capsys):
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    from pathlib import Path
    assert Path(info["default_weights"]).is_file() and info["params"] == 35_427
    assert "torch" in info["backends"] and "trt" in {**info["backends"], **info["missing_backends"]}


def test_bench_writes_ratios_and_fingerprint(weights_path, onnx_path, tmp_path):
    out = tmp_path / "b.json"
    assert main(["bench", "--backend", f"torch:{weights_path}", "--backend", f"onnx:{onnx_path}",
                 "--size", "32x48", "--iters", "2", "--warmup", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [b["kind"] for b in result["backends"]] == ["torch", "onnx"]
    assert result["backends"][0]["ratio_to_first_p50"] == 1.0
    assert set(result["backends"][1]["latency_ms"]) == {"p50", "p90", "p99", "mean", "min"}
    assert result["device"]["cpu"]["logical_cores"] >= 1


def test_evaluate_and_derain(weights_path, paired_dir, tmp_path):
    out = tmp_path / "e.json"
    assert main(["evaluate", "--backend", f"torch:{weights_path}", "--data", str(paired_dir), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["count"] == 3 and {"psnr_rgb_db", "psnr_y_db", "ssim_rgb", "ssim_y"} <= set(result["mean"])
    assert main(["derain", "--backend", f"torch:{weights_path}", str(paired_dir / "rain"), "--out", str(tmp_path / "d")]) == 0
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["000.png", "001.png", "002.png"]


def test_derain_refuses_to_overwrite_input(weights_path, paired_dir):
    from treefuse.errors import TreefuseError

    with pytest.raises(TreefuseError) as info:
        from treefuse.runtimes.applications.derain import derain_files
        from treefuse.runtimes.backends.registry import make_runner
        with make_runner(f"torch:{weights_path}") as runner:
            derain_files(runner, [paired_dir / "rain" / "000.png"], paired_dir / "rain")
    assert "overwrite" in str(info.value)


@pytest.mark.parametrize("make_args", [
    lambda t, w: ["derain", "--backend", f"torch:{w}", t / "text.png", "--out", t / "out"],
    lambda t, w: ["derain", "--backend", f"torch:{w}", t / "missing.png", "--out", t / "out"],
    lambda t, w: ["derain", "--backend", f"tflite:{w}", t / "text.png", "--out", t / "out"],
    lambda t, w: ["derain", "--backend", f"torch:{t / 'bad.onnx'}", t / "text.png", "--out", t / "out"],
    lambda t, w: ["parity", "--ref", f"torch:{w}", "--cand", f"onnx:{t / 'bad.onnx'}", "--images", t, "--json", t / "p.json"],
    lambda t, w: ["bench", "--backend", f"torch:{w}", "--size", "0x-5", "--json", t / "b.json"],
    lambda t, w: ["bench", "--backend", "onnx", "--size", "8x8"],
    lambda t, w: ["evaluate", "--backend", f"torch:{w}", "--data", t / "nowhere"],
    lambda t, w: ["export", "onnx", "--weights", t / "bad.onnx", "--out", t / "m.onnx"],
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, weights_path, make_args):
    (tmp_path / "text.png").write_text("not an image\n")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")
    before = set(tmp_path.rglob("*"))
    result = run_cli(*make_args(tmp_path, weights_path))
    assert_one_line_error(result)
    assert set(tmp_path.rglob("*")) == before


def test_a_bug_is_exit_3_with_the_traceback_never_the_gate_code(monkeypatch, capsys):
    from treefuse.cli import info_cmd

    def broken(args):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(info_cmd, "run", broken)
    assert main(["info"]) == 3
    err = capsys.readouterr().err
    assert err.splitlines()[0].startswith("treefuse: internal error") and "ZeroDivisionError: a bug" in err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_help_states_the_exit_code_contract(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "1 a quality gate failed, and nothing else" in out and "3 internal error" in out


def test_a_usage_error_is_one_line_exit_2(capsys):
    with pytest.raises(SystemExit) as done:
        main(["parity", "--no-such-option"])
    assert done.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("treefuse: error:")
