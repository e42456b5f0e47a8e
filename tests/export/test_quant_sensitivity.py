"""The float-layer search against a stand-in evaluator: order, stopping rule, unmeetable budgets."""
from __future__ import annotations

import pytest

from treefuse.errors import GateFailed
from treefuse.export.onnx.sensitivity import keep_until_within_budget, layer_sensitivity

# Each layer costs this much task PSNR when quantized; float layers cost nothing.
COST = {"head": 0.30, "block": 0.02, "tail": 0.10, "fuse": 0.0}
FP32 = 30.0


def evaluate(float_layers):
    return FP32 - sum(cost for layer, cost in COST.items() if layer not in float_layers)


def test_table_sorted_by_recovered_psnr():
    table = layer_sensitivity(list(COST), evaluate, evaluate([]))
    assert [row["layer"] for row in table] == ["head", "tail", "block", "fuse"]
    assert table[0]["recovered_db"] == pytest.approx(0.30)


def test_keeps_most_sensitive_until_within_budget():
    table = layer_sensitivity(list(COST), evaluate, evaluate([]))
    search = keep_until_within_budget(FP32, evaluate([]), table, evaluate, max_drop_db=0.15)
    assert search.float_layers == ["head"] and search.drop_db == pytest.approx(0.12)
    search = keep_until_within_budget(FP32, evaluate([]), table, evaluate, max_drop_db=0.1)
    assert search.float_layers == ["head", "tail"] and search.drop_db == pytest.approx(0.02)
    assert [step["drop_db"] for step in search.steps] == pytest.approx([0.42, 0.12, 0.02])


def test_already_within_budget_keeps_nothing():
    table = layer_sensitivity(list(COST), evaluate, evaluate([]))
    assert keep_until_within_budget(FP32, evaluate([]), table, evaluate, max_drop_db=1.0).float_layers == []


def test_unmeetable_budget_raises_with_best_found():
    table = layer_sensitivity(list(COST), evaluate, evaluate([]))
    with pytest.raises(GateFailed, match="best found was 0.000 dB"):
        keep_until_within_budget(FP32, evaluate([]), table, evaluate, max_drop_db=-0.5)
    with pytest.raises(GateFailed, match="with 1 of 4 layers"):
        keep_until_within_budget(FP32, evaluate([]), table, evaluate, max_drop_db=0.0, max_float_layers=1)


def test_paired_set_full_or_cropped(paired_dir):
    from treefuse.export.onnx.sensitivity import load_paired_set

    full = load_paired_set(paired_dir)
    assert len(full.rainy) == 3 and full.rainy[0].shape == (1, 3, 40, 56) and "full images" in full.source
    cropped = load_paired_set(paired_dir, max_pairs=2, crop=32)
    assert len(cropped.clean) == 2 and cropped.clean[0].shape == (1, 3, 32, 32)
