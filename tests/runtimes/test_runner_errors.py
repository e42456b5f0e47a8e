"""Runners turn only the runtime's own errors into one-line bad-input errors (exit 2); a MemoryError or
a bug in treefuse stays a bug (exit 3, traceback)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from treefuse.cli import main

from media import fixed_size_onnx


@pytest.fixture(scope="module")
def picture(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pic") / "rainy.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def identity_onnx(tmp_path_factory) -> Path:
    """A one-node N x 3 x H x W model: loads in milliseconds, runs any size."""
    import onnx
    from onnx import TensorProto, helper

    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, "H", "W"])
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "identity", [image],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path_factory.mktemp("onnx") / "identity.onnx"
    onnx.save(model, str(path))
    return path


def derain(spec: str, picture: Path, out: Path, capsys) -> tuple[int, list[str]]:
    """Exit code and the non-empty stderr lines of `treefuse derain --backend SPEC PICTURE`."""
    capsys.readouterr()
    code = main(["derain", "--backend", spec, str(picture), "--out", str(out)])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def assert_bad_input(code: int, lines: list[str]) -> None:
    assert code == 2 and len(lines) == 1 and lines[0].startswith("treefuse: error: "), (code, lines)


def assert_bug(code: int, lines: list[str], raised: str) -> None:
    assert code == 3 and lines[0].startswith("treefuse: internal error"), (code, lines)
    assert any(raised in line for line in lines[1:]), lines  # the traceback names what was raised


BUGS = [MemoryError("injected: out of memory"), AssertionError("injected: a bug in treefuse")]


# -- ONNX Runtime ---------------------------------------------------------------------------------

def test_onnx_corrupt_model_is_one_line(picture, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(np.random.default_rng(2).bytes(2048))
    assert_bad_input(*derain(f"onnx:{corrupt}", picture, tmp_path / "out", capsys))


def test_onnx_runtime_error_at_inference_is_one_line(identity_onnx, picture, tmp_path, capsys, monkeypatch):
    import onnxruntime
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail

    def fails(*args, **kwargs):
        raise Fail("[ONNXRuntimeError] : 1 : FAIL : Non-zero status code returned while running Conv node")

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", fails)
    code, lines = derain(f"onnx:{identity_onnx}", picture, tmp_path / "out", capsys)
    assert_bad_input(code, lines)
    assert "Non-zero status code" in lines[0]


@pytest.mark.parametrize("bug", BUGS, ids=lambda bug: type(bug).__name__)
def test_onnx_memory_error_or_bug_at_inference_is_exit_3(bug, identity_onnx, picture, tmp_path, capsys, monkeypatch):
    import onnxruntime

    def raises(*args, **kwargs):
        raise bug

    monkeypatch.setattr(onnxruntime.InferenceSession, "run", raises)
    assert_bug(*derain(f"onnx:{identity_onnx}", picture, tmp_path / "out", capsys), type(bug).__name__)


@pytest.mark.parametrize("bug", BUGS, ids=lambda bug: type(bug).__name__)
def test_onnx_memory_error_or_bug_while_loading_is_exit_3(bug, identity_onnx, picture, tmp_path, capsys, monkeypatch):
    import onnxruntime

    def raises(*args, **kwargs):
        raise bug

    monkeypatch.setattr(onnxruntime, "InferenceSession", raises)
    assert_bug(*derain(f"onnx:{identity_onnx}", picture, tmp_path / "out", capsys), type(bug).__name__)


def test_the_caught_types_are_onnx_runtimes_own():
    from treefuse.runtimes.backends.onnx_runner import ort_errors

    caught = ort_errors()
    names = {error.__name__ for error in caught}
    assert {"Fail", "InvalidArgument", "InvalidGraph", "InvalidProtobuf", "NoSuchFile", "RuntimeException"} <= names
    assert all(error.__module__.startswith("onnxruntime") for error in caught)
    assert not any(issubclass(error, (MemoryError, AssertionError, TypeError)) for error in caught)


# -- LiteRT and ExecuTorch: a corrupt file is the runtime's error, an injected one is ours -----------

def _corrupt(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\0\0\0\0" + np.random.default_rng(3).bytes(2044))
    return path


def test_litert_corrupt_model_is_one_line(picture, tmp_path, capsys):
    pytest.importorskip("ai_edge_litert", reason="LiteRT is not installed (pip install 'treefuse[litert]')")
    assert_bad_input(*derain(f"litert:{_corrupt(tmp_path, 'corrupt.tflite')}", picture, tmp_path / "out", capsys))


@pytest.mark.parametrize("bug", BUGS, ids=lambda bug: type(bug).__name__)
def test_litert_memory_error_or_bug_while_loading_is_exit_3(bug, picture, tmp_path, capsys, monkeypatch):
    pytest.importorskip("ai_edge_litert", reason="LiteRT is not installed (pip install 'treefuse[litert]')")
    from treefuse.runtimes.backends import litert_runner

    def interpreter(*args, **kwargs):
        raise bug

    monkeypatch.setattr(litert_runner, "import_interpreter", lambda: interpreter)
    model = _corrupt(tmp_path, "m.tflite")
    assert_bug(*derain(f"litert:{model}", picture, tmp_path / "out", capsys), type(bug).__name__)


def test_executorch_corrupt_programs_are_one_line(picture, tmp_path, capsys):
    pytest.importorskip("executorch", reason="ExecuTorch is not installed (pip install 'treefuse[executorch]')")
    # Random bytes (refused before the runtime sees them) and a file with a .pte identifier but no program.
    foreign = _corrupt(tmp_path, "foreign.pte")
    assert_bad_input(*derain(f"executorch:{foreign}", picture, tmp_path / "out", capsys))
    truncated = tmp_path / "truncated.pte"
    truncated.write_bytes(b"\x1c\0\0\0ET12" + bytes(120))
    code, lines = derain(f"executorch:{truncated}", picture, tmp_path / "out", capsys)
    assert_bad_input(code, lines)
    assert "cannot load" in lines[0]


@pytest.mark.parametrize("bug", BUGS, ids=lambda bug: type(bug).__name__)
def test_executorch_memory_error_or_bug_while_loading_is_exit_3(bug, picture, tmp_path, capsys, monkeypatch):
    runtime = pytest.importorskip("executorch.runtime",
                                  reason="ExecuTorch is not installed (pip install 'treefuse[executorch]')")

    class Failing:
        def load_program(self, *args, **kwargs):
            raise bug

    monkeypatch.setattr(runtime.Runtime, "get", staticmethod(lambda: Failing()))
    program = tmp_path / "m.pte"
    program.write_bytes(b"\x1c\0\0\0ET12" + bytes(120))
    assert_bug(*derain(f"executorch:{program}", picture, tmp_path / "out", capsys), type(bug).__name__)


# -- OpenVINO: a model that cannot take this input is the model's fault, a MemoryError is not ----------------

def test_openvino_model_that_cannot_take_the_input_is_one_line(picture, tmp_path, capsys):
    pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'treefuse[openvino]')")
    fixed_size_onnx(tmp_path / "fixed.onnx")
    code, lines = derain(f"openvino:{tmp_path / 'fixed.onnx'}", picture, tmp_path / "out", capsys)
    assert_bad_input(code, lines)
    assert "failed on a 1x3x24x32 input" in lines[0]


@pytest.mark.parametrize("bug", BUGS, ids=lambda bug: type(bug).__name__)
def test_openvino_memory_error_or_bug_while_compiling_is_exit_3(bug, identity_onnx, picture, tmp_path, capsys,
                                                                 monkeypatch):
    ov = pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'treefuse[openvino]')")

    def raises(*args, **kwargs):
        raise bug

    monkeypatch.setattr(ov.Core, "compile_model", raises)
    assert_bug(*derain(f"openvino:{identity_onnx}", picture, tmp_path / "out", capsys), type(bug).__name__)
