"""Stderr as a shell sees it (file descriptor 2 of a real process, where C++ runtimes and library loggers
write too): exactly one line on a bad input, nothing on success."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from media import fixed_size_onnx

# A Core ML package's manifest as coremltools writes it; the model spec it points at is what gets corrupted.
MANIFEST = {
    "fileFormatVersion": "1.0.0",
    "itemInfoEntries": {
        "2d2f3480-3451-465d-bd29-c2706c2208a0": {"author": "com.apple.CoreML", "description": "CoreML Model Weights",
                                                 "name": "weights", "path": "com.apple.CoreML/weights"},
        "79b9f955-d561-4a3b-8b64-1ba1aae31bea": {"author": "com.apple.CoreML",
                                                 "description": "CoreML Model Specification",
                                                 "name": "model.mlmodel", "path": "com.apple.CoreML/model.mlmodel"},
    },
    "rootModelIdentifier": "79b9f955-d561-4a3b-8b64-1ba1aae31bea",
}


def treefuse(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "treefuse", *argv], capture_output=True, text=True, cwd=cwd,
                          timeout=300)


def assert_one_error_line(result: subprocess.CompletedProcess, mentions: str) -> None:
    lines = result.stderr.splitlines()
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and lines[0].startswith("treefuse: error: ") and mentions in lines[0], result.stderr


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pic") / "rainy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


def corrupt_mlpackage(folder: Path) -> Path:
    package = folder / "corrupt.mlpackage"
    (package / "Data" / "com.apple.CoreML" / "weights").mkdir(parents=True)
    (package / "Manifest.json").write_text(json.dumps(MANIFEST, indent=4))
    (package / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(np.random.default_rng(1).bytes(300))
    (package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin").write_bytes(bytes(64))
    return package


@pytest.mark.slow  # importing coremltools in a fresh process takes ~30-60 s here
def test_corrupt_mlpackage_is_one_line(picture, tmp_path):
    pytest.importorskip("coremltools", reason="coremltools is not installed (pip install 'treefuse[coreml]')")
    package = corrupt_mlpackage(tmp_path)
    result = treefuse("derain", "--backend", f"coreml:{package}", str(picture), "--out", "out", cwd=tmp_path)
    assert_one_error_line(result, "corrupt.mlpackage")


def test_corrupt_model_on_openvino_is_one_line(picture, tmp_path):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'treefuse[openvino]')")
    model = tmp_path / "corrupt.onnx"
    model.write_bytes(np.random.default_rng(2).bytes(2048))  # every frontend tries it; TensorFlow's logs via absl
    result = treefuse("derain", "--backend", f"openvino:{model}", str(picture), "--out", "out", cwd=tmp_path)
    assert_one_error_line(result, "corrupt.onnx")


@pytest.mark.parametrize("content", [b"\x1c\0\0\0ET12" + bytes(120), np.random.default_rng(3).bytes(2048)],
                         ids=["pte-identifier-no-program", "random-bytes"])
def test_corrupt_pte_is_one_line(content, picture, tmp_path):
    pytest.importorskip("executorch", reason="ExecuTorch is not installed (pip install 'treefuse[executorch]')")
    program = tmp_path / "corrupt.pte"
    program.write_bytes(content)
    result = treefuse("derain", "--backend", f"executorch:{program}", str(picture), "--out", "out", cwd=tmp_path)
    assert_one_error_line(result, "corrupt.pte")


def test_corrupt_tflite_is_one_line(picture, tmp_path):
    pytest.importorskip("ai_edge_litert", reason="LiteRT is not installed (pip install 'treefuse[litert]')")
    model = tmp_path / "corrupt.tflite"
    model.write_bytes(np.random.default_rng(4).bytes(2048))
    result = treefuse("derain", "--backend", f"litert:{model}", str(picture), "--out", "out", cwd=tmp_path)
    assert_one_error_line(result, "corrupt.tflite")


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_a_model_failing_at_inference_is_one_line(kind, picture, tmp_path):
    # ONNX Runtime logs a failing kernel itself (in colour) before it raises: a Reshape to a fixed size.
    pytest.importorskip(kind if kind == "openvino" else "onnxruntime", reason=f"{kind} is not installed")
    fixed_size_onnx(tmp_path / "fixed.onnx")
    result = treefuse("derain", "--backend", f"{kind}:fixed.onnx", str(picture), "--out", "out", cwd=tmp_path)
    assert_one_error_line(result, "failed on a 1x3x24x32 input")


def test_a_successful_export_and_derain_print_nothing_on_stderr(tiny_weights, picture, tmp_path):
    exported = treefuse("export", "onnx", "--weights", str(tiny_weights), "--out", "m.onnx", cwd=tmp_path)
    assert exported.returncode == 0 and exported.stderr == "", exported.stderr
    derained = treefuse("derain", "--backend", "onnx:m.onnx", str(picture), "--out", "out", cwd=tmp_path)
    assert derained.returncode == 0 and derained.stderr == "", derained.stderr


@pytest.mark.slow
def test_a_successful_coreml_export_prints_no_progress_bars_into_a_log(tiny_coreml_weights, tmp_path):
    pytest.importorskip("coremltools", reason="coremltools is not installed (pip install 'treefuse[coreml]')")
    result = treefuse("export", "coreml", "--weights", str(tiny_coreml_weights), "--min-size", "16x16",
                      "--max-size", "64x64", "--out", "m.mlpackage", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.slow
def test_a_successful_executorch_export_prints_nothing_on_stderr(tiny_coreml_weights, tmp_path):
    pytest.importorskip("executorch", reason="ExecuTorch is not installed (pip install 'treefuse[executorch]')")
    result = treefuse("export", "executorch", "--weights", str(tiny_coreml_weights), "--min-size", "16x16",
                      "--max-size", "64x64", "--out", "m.pte", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    # a thread count makes the runtime reset its pool, which its C++ side used to announce on stderr
    result = treefuse("bench", "--backend", "executorch:m.pte", "--threads", "2", "--size", "32x32", "--warmup", "0",
                      "--iters", "1", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.slow
def test_a_successful_litert_export_with_a_relative_out_prints_nothing_on_stderr(tiny_coreml_weights, tmp_path):
    from treefuse.export.litert.exporter import converter_missing

    if converter_missing():
        pytest.skip(converter_missing())
    result = treefuse("export", "litert", "--weights", str(tiny_coreml_weights), "--size", "32x32", "--out", "m.tflite",
                      cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("target, needs", [("xnnpack-int8", "executorch"), ("coreml-w8a8", "coremltools")])
def test_a_successful_qat_run_prints_nothing_on_stderr(target, needs, tiny_weights, paired_dir, tmp_path):
    # torchao and coremltools warn on import (CUDA kernels, untested torch versions): held back.
    pytest.importorskip(needs, reason=f"{needs} is not installed")
    result = treefuse("qat", "--weights", str(tiny_weights), "--target", target, "--data", str(paired_dir),
                      "--steps", "1", "--patch", "16", "--batch", "1", "--synthetic-fraction", "0", "--out", "run",
                      cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    if target == "xnnpack-int8":  # its export imports torchao again (convert_pt2e), which warns on import
        result = treefuse("export", "executorch", "--precision", "int8", "--min-size", "16x16", "--max-size", "64x64",
                          "--qat", "run", "--out", "m.pte", cwd=tmp_path)
        assert result.returncode == 0 and result.stderr == "", result.stderr
