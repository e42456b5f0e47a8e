import json

import onnx
import pytest
from onnx import numpy_helper

from treefuse.cli import main


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
    assert result["passed"] and result["output_psnr_db"]["min"] > 60
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
    from treefuse.runtimes.parity import ParityGates, judge

    rows = [{"output_psnr_db": 50.0, "ref_psnr_db": 25.0, "cand_psnr_db": 24.8}]
    assert judge(rows, ParityGates(max_task_drop_db=0.1))["passed"] is False
    assert judge(rows, ParityGates(max_task_drop_db=0.3))["passed"] is True
