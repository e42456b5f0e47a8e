"""ExecuTorch: export fp32/int8 to .pte, run it on ExecuTorch's runtime, parity vs PyTorch, bad inputs refused."""
from __future__ import annotations

import json
import types

import numpy as np
import pytest
import torch

pytest.importorskip("executorch", reason="ExecuTorch is not installed (pip install 'treefuse[executorch]')")

from treefuse.cli import main  # noqa: E402
from treefuse.errors import TreefuseError  # noqa: E402
from treefuse.export.executorch.exporter import export_executorch  # noqa: E402
from treefuse.runtimes.backends.registry import make_runner  # noqa: E402
from treefuse.sidecar import sidecar_path  # noqa: E402

from backend_helpers import min_psnr, run_backend  # noqa: E402

RANGE = dict(min_hw=(16, 16), max_hw=(64, 64))  # a small planned maximum keeps the runtime's memory small


@pytest.fixture(scope="module")
def fp32_pte(tiny_coreml_weights, tmp_path_factory):
    return export_executorch(tiny_coreml_weights, tmp_path_factory.mktemp("et") / "m.pte", **RANGE)


@pytest.fixture(scope="module")
def calibration():
    images = np.random.default_rng(3).random((4, 3, 32, 32), dtype=np.float32)
    return types.SimpleNamespace(images=images, sha256="c" * 64)


@pytest.mark.slow
def test_fp32_program_matches_pytorch_at_several_sizes(fp32_pte, tiny_coreml_weights):
    for shape in [(1, 3, 16, 16), (2, 3, 40, 56), (1, 3, 64, 64)]:
        batch = np.random.default_rng(0).random(shape, dtype=np.float32)
        output, facts = run_backend(f"executorch:{fp32_pte}", batch)
        reference, _ = run_backend(f"torch:{tiny_coreml_weights}", batch)
        assert output.shape == shape and np.abs(output - reference).max() < 1e-4
    assert facts["precision"] == "fp32" and facts["artifact"]["format"] == "executorch"
    assert facts["artifact"]["source_sha256"] and facts["backend"].startswith("ExecuTorch")


@pytest.mark.slow
def test_int8_program_is_calibrated_close_and_fails_the_fp32_gate(tiny_coreml_weights, calibration, tmp_path):
    from treefuse.gates import gates_for

    pte = export_executorch(tiny_coreml_weights, tmp_path / "m8.pte", "int8", calibration, **RANGE)
    batch = np.random.default_rng(5).random((1, 3, 32, 48), dtype=np.float32)
    output, facts = run_backend(f"executorch:{pte}", batch)
    reference, _ = run_backend(f"torch:{tiny_coreml_weights}", batch)
    quality = min_psnr(output, reference)
    assert facts["precision"] == "int8" and facts["artifact"]["calibration_sha256"] == "c" * 64
    # Really 8-bit (not float passed through), yet close: between the int8 gate and the fp32 one.
    assert gates_for("int8").min_output_psnr_db <= quality < gates_for("fp32").min_output_psnr_db


@pytest.mark.slow
def test_bad_programs_and_sizes_are_one_line_errors(fp32_pte, tmp_path):
    with make_runner(f"executorch:{fp32_pte}") as runner:
        with pytest.raises(TreefuseError, match="outside the artifact's range"):
            runner.infer(np.zeros((1, 3, 80, 64), np.float32))
        with pytest.raises(TreefuseError, match="outside the artifact's range"):
            runner.infer(np.zeros((1, 3, 8, 32), np.float32))
    corrupt = tmp_path / "corrupt.pte"
    corrupt.write_bytes(b"not a program" * 10)
    with pytest.raises(TreefuseError, match="cannot load"):
        make_runner(f"executorch:{corrupt}").activate()
    # A program whose bytes changed after export: its sidecar no longer vouches for it.
    changed = tmp_path / "changed.pte"
    changed.write_bytes(fp32_pte.read_bytes() + b"\0")
    sidecar_path(changed).write_text(sidecar_path(fp32_pte).read_text())
    with pytest.raises(TreefuseError, match="sha256 differs"):
        make_runner(f"executorch:{changed}").activate()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")  # torch's pytree LeafSpec deprecation, raised inside torch.export
def test_a_program_of_another_architecture_is_refused(tmp_path):
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    other = torch.nn.Conv2d(3, 8, 1).eval()  # 3 channels in, 8 out: not an image-to-image deraining model
    program = torch.export.export(other, (torch.rand(1, 3, 16, 16),))
    path = tmp_path / "other.pte"
    path.write_bytes(to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()]).to_executorch().buffer)
    with pytest.raises(TreefuseError, match="not a treefuse deraining program"):
        make_runner(f"executorch:{path}").activate()


def test_cli_refuses_bad_requests_before_exporting(tmp_path, capsys):
    assert main(["export", "executorch", "--precision", "int8", "--out", str(tmp_path / "m.pte")]) == 2
    assert "needs a calibration set" in capsys.readouterr().err
    assert main(["export", "executorch", "--out", str(tmp_path / "m.onnx")]) == 2
    assert "must end in .pte" in capsys.readouterr().err
    assert main(["export", "executorch", "--min-size", "64x64", "--max-size", "32x32",
                 "--out", str(tmp_path / "m.pte")]) == 2
    assert "empty" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_missing_runtime_names_the_extra(tmp_path, monkeypatch):
    path = tmp_path / "m.pte"
    path.write_bytes(b"x")
    for name in ("executorch", "executorch.runtime"):  # importing either now raises ImportError, cached or not
        monkeypatch.setitem(__import__("sys").modules, name, None)
    with pytest.raises(TreefuseError, match=r"pip install 'treefuse\[executorch\]'"):
        make_runner(f"executorch:{path}").activate()


def test_sidecar_that_is_not_json_is_refused(tmp_path):
    path = tmp_path / "m.pte"
    path.write_bytes(b"x")
    sidecar_path(path).write_text("{not json")
    with pytest.raises(TreefuseError, match="not valid JSON"):
        make_runner(f"executorch:{path}").activate()
    sidecar_path(path).write_text(json.dumps({"format": "other"}))
    with pytest.raises(TreefuseError, match="not a treefuse sidecar"):
        make_runner(f"executorch:{path}").activate()
