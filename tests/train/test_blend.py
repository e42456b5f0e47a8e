"""`treefuse blend`: (1 - alpha) * base + alpha * tuned, tensor by tensor, with both parents named."""
from __future__ import annotations

import json

import pytest
import torch

from treefuse.checkpoint import load_weights, read_metadata, save_weights
from treefuse.cli import main
from treefuse.config import ModelConfig
from treefuse.model import TreeFusionNet

SMALL = ModelConfig(channels=4, blocks=2)


@pytest.fixture()
def parents(tmp_path):
    torch.manual_seed(3)
    base = save_weights(TreeFusionNet(SMALL), tmp_path / "base.safetensors", note="base")
    tuned = save_weights(TreeFusionNet(SMALL), tmp_path / "tuned.safetensors", note="tuned")
    return base, tuned


@pytest.mark.parametrize("alpha", [0.0, 0.25, 1.0])
def test_blend_is_the_interpolation_of_every_tensor(parents, tmp_path, alpha):
    base, tuned = parents
    out = tmp_path / "blend.safetensors"
    assert main(["blend", "--base", str(base), "--tuned", str(tuned), "--alpha", str(alpha), "--out", str(out)]) == 0
    first, second, blend = (load_weights(p).model.state_dict() for p in (base, tuned, out))
    assert set(blend) == set(first)
    for name, tensor in blend.items():
        torch.testing.assert_close(tensor, first[name] + alpha * (second[name] - first[name]), rtol=0, atol=1e-7)
    if alpha == 0.0:
        assert all(torch.equal(blend[name], first[name]) for name in blend)
    assert not all(torch.equal(first[name], second[name]) for name in first)  # the parents differ


def test_blend_provenance_names_both_parents(parents, tmp_path, capsys):
    base, tuned = parents
    out = tmp_path / "blend.safetensors"
    main(["blend", "--base", str(base), "--tuned", str(tuned), "--alpha", "0.5", "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    record = json.loads(read_metadata(out)["provenance"])
    assert record["kind"] == "blend" and record["blend"]["alpha"] == 0.5
    assert record["blend"]["base"]["sha256"] == load_weights(base).sha256 == printed["base_sha256"]
    assert record["blend"]["tuned"]["sha256"] == load_weights(tuned).sha256 == printed["tuned_sha256"]
    assert record["blend"]["tuned"]["provenance"]["note"] == "tuned"
