import json

import pytest
import torch

from treefuse.checkpoint import load_weights, save_weights
from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.model import TreeFusionNet


def test_round_trip_keeps_weights_config_and_provenance(tmp_path):
    model = TreeFusionNet(ModelConfig(blocks=2))
    path = save_weights(model, tmp_path / "w.safetensors", steps=7)
    loaded = load_weights(path)
    assert loaded.config == ModelConfig(blocks=2)
    assert loaded.provenance["steps"] == 7 and "torch" in loaded.provenance["tool_versions"]
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.model.state_dict()[name], tensor)


def test_mismatched_config_is_refused(tmp_path):
    from safetensors.torch import save_file

    state = TreeFusionNet(ModelConfig(blocks=2)).state_dict()
    meta = {"format": "treefuse-weights-v1", "config": ModelConfig(blocks=3).to_json()}
    save_file(state, str(tmp_path / "w.safetensors"), metadata=meta)
    with pytest.raises(TreefuseError, match="do not match"):
        load_weights(tmp_path / "w.safetensors")


def test_nan_weights_are_refused(tmp_path):
    model = TreeFusionNet(ModelConfig(blocks=1))
    with torch.no_grad():
        model.head.weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(TreefuseError, match="NaN"):
        save_weights(model, tmp_path / "w.safetensors")
    assert not (tmp_path / "w.safetensors").exists()


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":"])
def test_corrupt_file_is_refused(tmp_path, content):
    path = tmp_path / "w.safetensors"
    path.write_bytes(content)
    with pytest.raises(TreefuseError):
        load_weights(path)


def test_truncated_file_is_refused(tmp_path):
    path = save_weights(TreeFusionNet(ModelConfig(blocks=1)), tmp_path / "w.safetensors")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(TreefuseError):
        load_weights(path)


def test_plain_safetensors_without_treefuse_metadata_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(2)}, str(tmp_path / "w.safetensors"))
    with pytest.raises(TreefuseError, match="not treefuse weights"):
        load_weights(tmp_path / "w.safetensors")


def test_shipped_default_weights_load():
    from treefuse.checkpoint import DEFAULT_WEIGHTS

    loaded = load_weights(DEFAULT_WEIGHTS)
    assert loaded.config == ModelConfig()
    assert DEFAULT_WEIGHTS.stat().st_size <= 200_000
    assert json.dumps(loaded.provenance)
