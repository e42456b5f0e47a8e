"""The float-layer search against a stand-in evaluator: order, stopping rule (the gates' mean and worst image),
unmeetable gates."""
from __future__ import annotations

import pytest

from treefuse.errors import GateFailed
from treefuse.export.onnx.sensitivity import keep_until_gates_pass, layer_sensitivity
from treefuse.gates import Gates
from treefuse.portable.quality import judge_rows

# Each layer costs this much task PSNR on each of two images when quantized; float layers cost nothing.
COST = {"head": (0.30, 0.30), "block": (0.02, 0.02), "tail": (0.10, 0.10), "fuse": (0.0, 0.0)}
FP32 = 30.0


def judged(cost, gates):
    """A stand-in evaluator: float layers -> the parity verdict export's final check would give."""
    def evaluate(float_layers):
        drops = [sum(per_image[i] for layer, per_image in cost.items() if layer not in float_layers)
                 for i in range(len(next(iter(cost.values()))))]
        rows = [{"image": f"pair {i}", "finite": True, "output_psnr_db": 50.0, "ref_psnr_db": FP32,
                 "cand_psnr_db": FP32 - drop} for i, drop in enumerate(drops)]
        return judge_rows(rows, gates.to_json())
    return evaluate


def mean_gates(max_drop_db, min_output_psnr_db=35.0):
    return Gates(min_output_psnr_db, max_drop_db, None, precision="int8")


def search(cost, gates, **options):
    evaluate = judged(cost, gates)
    table = layer_sensitivity(list(cost), evaluate, evaluate([]))
    return keep_until_gates_pass(FP32, evaluate([]), table, evaluate, **options)


def test_table_sorted_by_recovered_psnr():
    evaluate = judged(COST, mean_gates(0.1))
    table = layer_sensitivity(list(COST), evaluate, evaluate([]))
    assert [row["layer"] for row in table] == ["head", "tail", "block", "fuse"]
    assert table[0]["recovered_db"] == pytest.approx(0.30)


def test_keeps_most_sensitive_until_within_budget():
    found = search(COST, mean_gates(0.15))
    assert found.float_layers == ["head"] and found.drop_db == pytest.approx(0.12)
    found = search(COST, mean_gates(0.1))
    assert found.float_layers == ["head", "tail"] and found.drop_db == pytest.approx(0.02)
    assert [step["drop_db"] for step in found.steps] == pytest.approx([0.42, 0.12, 0.02])


def test_already_within_budget_keeps_nothing():
    assert search(COST, mean_gates(1.0)).float_layers == []


def test_a_mean_within_budget_with_one_image_beyond_the_worst_image_gate_keeps_searching():
    # 'spot' costs one image 0.45 dB and the others nothing: the mean drop (0.095 dB) is within 0.1 dB,
    # pair 0 (0.47 dB) is not within 0.4 dB, so the final check would refuse the all-INT8 model.
    spot = {"head": (0.02,) * 6, "spot": (0.45, 0, 0, 0, 0, 0)}
    found = search(spot, Gates(35.0, 0.1, 0.4, precision="int8"))
    assert found.steps[0]["drop_db"] == pytest.approx(0.095) and not found.steps[0]["passed"]
    assert "pair 0" in found.steps[0]["failures"][0] and "worst image" in found.steps[0]["failures"][0]
    assert found.float_layers == ["spot"] and found.steps[-1]["passed"]
    assert found.worst_drop_db == pytest.approx(0.02)


def test_unmeetable_gates_raise_with_best_found_and_the_advice():
    unreachable = mean_gates(0.0, min_output_psnr_db=60.0)  # the stand-in's outputs score 50 dB
    # the best step is the first with the fewest failures and the least drop: 'fuse' costs nothing
    with pytest.raises(GateFailed, match="best found was 0.000 dB mean, 0.000 dB on the worst image, with 3 of 4"):
        search(COST, unreachable)
    with pytest.raises(GateFailed, match="best found was 0.120 dB mean.* with 1 of 4 layers"):
        search(COST, mean_gates(0.0), max_float_layers=1)
    worst_only = {"spot": (0.45, 0.0)}
    with pytest.raises(GateFailed, match=r"image pair 0 loses 0.450 dB .*; or fine-tune for it$"):
        search(worst_only, Gates(35.0, 0.5, 0.4, precision="int8"), max_float_layers=0, advice="fine-tune for it")


def test_paired_set_full_or_cropped(paired_dir):
    from treefuse.export.onnx.sensitivity import load_paired_set

    full = load_paired_set(paired_dir)
    assert len(full.rainy) == 3 and full.rainy[0].shape == (1, 3, 40, 56) and "full images" in full.source
    cropped = load_paired_set(paired_dir, max_pairs=2, crop=32)
    assert len(cropped.clean) == 2 and cropped.clean[0].shape == (1, 3, 32, 32)
