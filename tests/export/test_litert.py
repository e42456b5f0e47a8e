"""LiteRT: export fp32/fp16/int8 to .tflite (litert-torch in its own venv), run on LiteRT's interpreter, bad inputs."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest

pytest.importorskip("ai_edge_litert", reason="LiteRT is not installed (pip install 'treefuse[litert]')")

from treefuse.cli import main  # noqa: E402
from treefuse.errors import TreefuseError  # noqa: E402
from treefuse.export.litert import exporter as litert_export  # noqa: E402
from treefuse.export.litert.exporter import export_litert  # noqa: E402
from treefuse.runtimes.backends.registry import make_runner  # noqa: E402

from backend_helpers import min_psnr, run_backend  # noqa: E402

SIZE = (32, 32)


def converter_or_skip() -> str:
    try:
        return litert_export.converter_python()
    except TreefuseError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def fp32_tflite(tiny_coreml_weights, tmp_path_factory):
    converter_or_skip()
    return export_litert(tiny_coreml_weights, tmp_path_factory.mktemp("litert") / "m.tflite", size=SIZE)


@pytest.mark.slow
def test_fp32_model_matches_pytorch_at_sizes_other_than_converted(fp32_tflite, tiny_coreml_weights):
    for shape in [(1, 3, 32, 32), (2, 3, 40, 56), (1, 3, 17, 23)]:
        batch = np.random.default_rng(0).random(shape, dtype=np.float32)
        output, facts = run_backend(f"litert:{fp32_tflite}", batch)
        reference, _ = run_backend(f"torch:{tiny_coreml_weights}", batch)
        assert output.shape == shape and np.abs(output - reference).max() < 1e-4
    assert facts["precision"] == "fp32" and facts["artifact"]["format"] == "litert"
    assert "litert-torch" in facts["artifact"]["tool_versions"] and facts["backend"].startswith("LiteRT")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_reduced_precisions_are_close_but_not_fp32_exact(precision, tiny_coreml_weights, paired_dir, tmp_path):
    from treefuse.calib.build import build_calibration_set
    from treefuse.gates import gates_for

    converter_or_skip()
    calibration = None
    if precision == "int8":
        calibration = build_calibration_set(paired_dir, tmp_path / "calib", 3, (32, 32), seed=0)
    path = export_litert(tiny_coreml_weights, tmp_path / f"m.{precision}.tflite", precision, calibration, SIZE)
    batch = np.random.default_rng(5).random((1, 3, 32, 48), dtype=np.float32)
    output, facts = run_backend(f"litert:{path}", batch)
    reference, _ = run_backend(f"torch:{tiny_coreml_weights}", batch)
    assert facts["precision"] == precision
    assert gates_for(precision).min_output_psnr_db <= min_psnr(output, reference) < 140  # fp32 rounding scores ~145 dB
    if precision == "int8":
        assert facts["artifact"]["calibration_sha256"]
        # The across-block fuse stays float: dequantized into it, quantized out of it, besides input and output.
        from ai_edge_litert.interpreter import Interpreter

        ops = [op["op_name"] for op in Interpreter(model_path=str(path))._get_ops_details()]
        assert ops.count("DEQUANTIZE") > 1 and ops.count("QUANTIZE") > 1


def test_corrupt_and_foreign_files_are_one_line_errors(tmp_path):
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a flatbuffer" * 8)
    with pytest.raises(TreefuseError, match="cannot load"):
        make_runner(f"litert:{corrupt}").activate()


@pytest.mark.slow
def test_a_model_of_another_architecture_is_refused(tmp_path):
    python = converter_or_skip()
    path = tmp_path / "other.tflite"
    script = ("import torch, litert_torch, sys; m = torch.nn.Conv2d(3, 8, 1).eval(); "
              "litert_torch.convert(m, (torch.rand(1, 3, 16, 16),)).export(sys.argv[1])")
    subprocess.run([python, "-c", script, str(path)], check=True, capture_output=True)
    with make_runner(f"litert:{path}") as runner, pytest.raises(TreefuseError, match="keeps the input's shape"):
        runner.infer(np.zeros((1, 3, 16, 16), np.float32))


def test_cli_refuses_bad_requests_before_converting(tmp_path, capsys):
    assert main(["export", "litert", "--precision", "int8", "--out", str(tmp_path / "m.tflite")]) == 2
    assert "needs a calibration set" in capsys.readouterr().err
    assert main(["export", "litert", "--out", str(tmp_path / "m.pte")]) == 2
    assert "must end in .tflite" in capsys.readouterr().err
    assert main(["export", "litert", "--precision", "int8", "--calib", str(tmp_path), "--out",
                 str(tmp_path / "m.tflite")]) == 2
    assert "not a calibration set" in capsys.readouterr().err
    assert not list(tmp_path.glob("*.tflite*"))


def test_missing_converter_and_runtime_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(litert_export.CONVERTER_ENV, raising=False)
    monkeypatch.setattr("treefuse.side_venv.SOURCE_TREE", tmp_path)  # no .venv-litert beside the tree ...
    monkeypatch.chdir(tmp_path)  # ... nor in the working directory
    monkeypatch.setattr(litert_export.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(TreefuseError, match="make install-litert"):
        litert_export.converter_python()
    path = tmp_path / "m.tflite"
    path.write_bytes(b"x")
    monkeypatch.setitem(__import__("sys").modules, "ai_edge_litert", None)
    monkeypatch.setitem(__import__("sys").modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(TreefuseError, match=r"pip install 'treefuse\[litert\]'"):
        make_runner(f"litert:{path}").activate()


def test_converter_failure_is_one_line(tiny_coreml_weights, tmp_path, monkeypatch):
    monkeypatch.setenv(litert_export.CONVERTER_ENV, "false")  # a "Python" that fails at once
    with pytest.raises(TreefuseError, match="conversion failed"):
        export_litert(tiny_coreml_weights, tmp_path / "m.tflite", size=SIZE)
    assert not (tmp_path / "m.tflite").exists()
