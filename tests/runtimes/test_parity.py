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
    with pytest.raises(TreefuseError, match="max worst-image task drop threshold .* finite number"):
        Gates(40.0, 0.1, bad)
    with pytest.raises(TreefuseError, match="finite number"):
        Gates(40.0, 0.1, 0.4).with_overrides(max_worst_task_drop_db=bad)


def test_every_precision_has_default_gates_and_an_unknown_one_gets_the_loosest():
    from treefuse.gates import DEFAULT_GATES, gates_for

    assert gates_for("int8+bf16") == DEFAULT_GATES["int8"]
    assert gates_for("fp32").min_output_psnr_db > gates_for("fp16").min_output_psnr_db > gates_for("int8").min_output_psnr_db
    with pytest.raises(TreefuseError, match="no gates for precision 'mystery'"):
        gates_for("mystery")  # a new precision gets a row of its own, never the int8 row by accident


# A mean hides the worst frame (issue 21): one held-out pair lost 0.49 dB while the 50-pair mean moved -0.016 dB.
def _frames(worst_delta_db: float, count: int = 50) -> list[dict]:
    rows = [{"image": f"{i:03d}.png", "finite": True, "output_psnr_db": 45.0, "ref_psnr_db": 22.0,
             "cand_psnr_db": 22.0} for i in range(count)]
    rows[31].update(output_psnr_db=37.0, cand_psnr_db=22.0 + worst_delta_db)
    return rows


def test_one_frame_losing_half_a_db_fails_the_int8_gate_though_the_mean_passes():
    from treefuse.runtimes.measurements.parity import ParityGates, judge

    result = judge(_frames(-0.49), ParityGates(gates_for("int8")))
    assert result["task"]["delta_db"] > -gates_for("int8").max_task_drop_db  # the mean alone would pass
    assert result["passed"] is False
    assert result["failures"] == ["image 031.png loses 0.490 dB of task PSNR > 0.4 dB (worst image)"]
    worst = result["worst_image"]
    assert worst["image"] == "031.png" and worst["output_psnr_db"] == 37.0
    assert worst["task_delta_db"] == pytest.approx(-0.49) and worst["by"] == "task PSNR change"
    assert result["gates"]["max_worst_task_drop_db"] == 0.4


def test_a_worst_frame_under_the_bound_passes_and_is_still_named():
    from treefuse.runtimes.measurements.parity import ParityGates, judge

    result = judge(_frames(-0.33), ParityGates(gates_for("int8")))
    assert result["passed"] is True and result["worst_image"]["image"] == "031.png"
    assert judge(_frames(-0.33), ParityGates(gates_for("fp16")))["passed"] is False  # fp16 allows 0.2 dB


def test_without_ground_truth_the_worst_image_is_the_lowest_output_psnr():
    from treefuse.runtimes.measurements.parity import ParityGates, judge

    rows = [{"image": "a.png", "finite": True, "output_psnr_db": 50.0},
            {"image": "b.png", "finite": True, "output_psnr_db": 30.0}]
    result = judge(rows, ParityGates(gates_for("int8")))
    assert result["worst_image"] == {"by": "output PSNR", "image": "b.png", "output_psnr_db": 30.0}
    assert result["failures"] == ["output PSNR min 30.00 dB < 35.0 dB (image b.png)"]


def test_gates_written_before_the_worst_image_bound_judge_the_mean_alone():
    from treefuse.portable.quality import judge_rows
    from treefuse.results import ParityResult

    old_gates = {"min_output_psnr_db": 35.0, "max_task_drop_db": 0.1, "require_finite": True, "precision": "int8"}
    result = judge_rows(_frames(-0.49), old_gates)
    assert result["passed"] is True and result["worst_image"]["image"] == "031.png"
    old_record = {"kind": "treefuse-parity", "schema_version": 1, "device": {}, "passed": True, "gates": old_gates,
                  "task": {"ref_psnr_db": 22.0, "cand_psnr_db": 21.99, "delta_db": -0.01}}
    assert ParityResult.from_json(old_record).worst_image is None


def test_the_default_worst_image_bounds_sit_above_their_mean_bounds():
    from treefuse.gates import DEFAULT_GATES, gates_table

    assert {name: g.max_worst_task_drop_db for name, g in DEFAULT_GATES.items()} == {
        "fp32": 0.05, "fp16": 0.2, "bf16": 0.5, "w8": 0.5, "int8": 0.4, "w8a8": 0.4}
    assert all(g.max_worst_task_drop_db >= g.max_task_drop_db for g in DEFAULT_GATES.values())
    assert "int8  output PSNR >= 35 dB, task drop <= 0.1 dB (mean), <= 0.4 dB (worst image)" in gates_table()


@pytest.fixture(scope="module")
def negated_onnx(shipped_onnx, tmp_path_factory):
    tampered = tmp_path_factory.mktemp("negated") / "negated.onnx"
    _negate_one_3x3_kernel(shipped_onnx, tampered, 0)
    return tampered


@pytest.fixture(scope="module")
def reference_pairs(shipped_weights, paired_dir, tmp_path_factory):
    """Pairs whose ground truth is the reference's own output: any change to the model then loses task PSNR."""
    from treefuse.images import from_batch, read_image, to_batch, write_image
    from treefuse.runtimes.backends.registry import make_runner

    root = tmp_path_factory.mktemp("reference-pairs")
    with make_runner(f"torch:{shipped_weights}") as reference:
        for rainy in sorted((paired_dir / "rain").iterdir()):
            image = read_image(rainy)
            write_image(root / "rain" / rainy.name, image)
            write_image(root / "clean" / rainy.name, from_batch(reference.infer(to_batch(image))))
    return root


def test_parity_cli_fails_on_the_worst_image_and_names_it(shipped_weights, negated_onnx, reference_pairs, tmp_path,
                                                          capsys):
    loose = tmp_path / "loose.json"
    base = ["parity", "--ref", f"torch:{shipped_weights}", "--cand", f"onnx:{negated_onnx}",
            "--images", str(reference_pairs), "--min-psnr", "0", "--max-task-drop", "50"]
    assert main([*base, "--max-worst-task-drop", "50", "--json", str(loose)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(loose.read_text())
    worst = result["worst_image"]
    drops = [r["ref_psnr_db"] - r["cand_psnr_db"] for r in result["images"]]
    assert -worst["task_delta_db"] == max(drops) > 0.01 and worst["image"].endswith(".png")
    assert f"worst image: {worst['image']}" in printed and "(worst image)" in printed
    assert result["gates"]["max_worst_task_drop_db"] == 50.0

    bound = max(drops) - 0.005
    strict = tmp_path / "strict.json"
    assert main([*base, "--max-worst-task-drop", f"{bound}", "--json", str(strict)]) == 1
    err = capsys.readouterr().err
    assert f"gate failed: image {worst['image']} loses {max(drops):.3f} dB of task PSNR > {bound:g} dB (worst image)" in err
    judged = json.loads(strict.read_text())
    assert judged["passed"] is False and len(judged["failures"]) == 1  # the mean passed; the worst frame did not

    assert main([*base, "--max-worst-task-drop", "nan"]) == 2
    assert "finite number" in capsys.readouterr().err


def test_export_check_fails_on_the_worst_image_and_names_it(shipped_weights, negated_onnx, reference_pairs):
    from treefuse.errors import GateFailed
    from treefuse.export.verify import verify_export
    from treefuse.gates import Gates
    from treefuse.runtimes.measurements.parity import folder_samples, image_set

    samples = list(folder_samples(image_set(reference_pairs)))
    loose = verify_export(f"torch:{shipped_weights}", f"onnx:{negated_onnx}", samples, Gates(0.0, 50.0, 50.0),
                          "the paired images")
    worst = loose["worst_image"]
    with pytest.raises(GateFailed, match=f"image {worst['image']} loses .* \\(worst image\\); nothing was written"):
        verify_export(f"torch:{shipped_weights}", f"onnx:{negated_onnx}", samples,
                      Gates(0.0, 50.0, -worst["task_delta_db"] - 0.005), "the paired images")


def test_the_readme_gate_table_is_the_gate_table():
    import re
    from pathlib import Path

    from treefuse.gates import DEFAULT_GATES

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    documented = {}
    for names, psnr, mean, worst in re.findall(r"^  \| ([\w, ]+) \| >= ([\d.]+) dB \| <= ([\d.]+) dB \| <= ([\d.]+) dB "
                                               r"\| finite \|$", readme, re.M):
        for name in names.split(", "):
            documented[name] = (float(psnr), float(mean), float(worst))
    assert documented == {name: (g.min_output_psnr_db, g.max_task_drop_db, g.max_worst_task_drop_db)
                          for name, g in DEFAULT_GATES.items()}
