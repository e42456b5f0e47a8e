import json

import onnx
import pytest
from onnx import numpy_helper

from treefuse.cli import main
from treefuse.errors import TreefuseError
from treefuse.gates import gates_for


def _negate_one_3x3_kernel(source, target, which):
    model = onnx.load(str(source))
    kernels = [init for init in model.graph.initializer
               if numpy_helper.to_array(init).ndim == 4 and tuple(init.dims[1:]) == (16, 3, 3)]
    init = kernels[which]
    init.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(init), init.name))
    onnx.save(model, str(target))


def test_correct_export_passes(shipped_weights, shipped_onnx, paired_dir, tmp_path):
    out = tmp_path / "p.json"
    assert main(["parity", "--ref", f"torch:{shipped_weights}", "--cand", f"onnx:{shipped_onnx}",
                 "--images", str(paired_dir), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["passed"] and result["output_psnr_db"]["min"] >= gates_for("fp32").min_output_psnr_db
    assert abs(result["task"]["delta_db"]) < 1e-3
    assert result["reference"]["kind"] == "torch" and result["candidate"]["kind"] == "onnx"
    assert result["metric"]["channel"] == "RGB"


@pytest.mark.parametrize("which", [0, 15, -1])  # first, a middle and the last block's 3x3 kernels
def test_negated_kernel_fails_the_default_gate(shipped_weights, shipped_onnx, paired_dir, tmp_path, which):
    tampered = tmp_path / "tampered.onnx"
    _negate_one_3x3_kernel(shipped_onnx, tampered, which)
    out = tmp_path / "p.json"
    code = main(["parity", "--ref", f"torch:{shipped_weights}", "--cand", f"onnx:{tampered}",
                 "--images", str(paired_dir / "rain"), "--json", str(out)])
    assert code == 1
    assert json.loads(out.read_text())["passed"] is False


def test_judge_is_rerunnable_on_saved_rows():
    from treefuse.gates import Gates
    from treefuse.runtimes.measurements.parity import ParityGates, judge

    rows = [{"output_psnr_db": 50.0, "ref_psnr_db": 25.0, "cand_psnr_db": 24.8}]
    assert judge(rows, ParityGates(Gates(40.0, 0.1)))["passed"] is False
    assert judge(rows, ParityGates(Gates(40.0, 0.3)))["passed"] is True
    assert judge(rows, ParityGates(Gates(60.0, 0.3)))["passed"] is False


def test_a_non_finite_output_fails_the_gate_and_is_named():
    from treefuse.gates import Gates
    from treefuse.runtimes.measurements.parity import ParityGates, judge

    rows = [{"image": "a.png", "finite": True, "output_psnr_db": 90.0},
            {"image": "b.png", "finite": False, "output_psnr_db": None}]
    result = judge(rows, ParityGates(Gates(40.0, 0.1)))
    assert result["passed"] is False and result["non_finite_images"] == ["b.png"]
    assert "b.png" in result["failures"][0]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -1.0, 1e9])
def test_a_non_finite_or_absurd_threshold_is_refused(bad):
    from treefuse.errors import TreefuseError
    from treefuse.gates import Gates

    with pytest.raises(TreefuseError, match="finite number"):
        Gates(bad, 0.1)
    with pytest.raises(TreefuseError, match="finite number"):
        Gates(40.0, bad)


def test_every_precision_has_default_gates_and_an_unknown_one_gets_the_loosest():
    from treefuse.gates import DEFAULT_GATES, gates_for

    assert gates_for("int8+bf16") == DEFAULT_GATES["int8"]
    assert gates_for("fp32").min_output_psnr_db > gates_for("fp16").min_output_psnr_db > gates_for("int8").min_output_psnr_db
    with pytest.raises(TreefuseError, match="no gates for precision 'mystery'"):
        gates_for("mystery")  # a new precision gets a row of its own, never the int8 row by accident
