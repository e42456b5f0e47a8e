"""Weights as safetensors with the config and provenance in the file's metadata.

Never unpickles: tensors come from safetensors, the config from JSON metadata, and
a file whose tensors do not match its config is refused.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError, one_line
from treefuse.files import atomic_path, sha256_file
from treefuse.model import TreeFusionNet
from treefuse.provenance import provenance

FORMAT = "treefuse-weights-v1"
DEFAULT_WEIGHTS = Path(__file__).parent / "weights" / "default.safetensors"
DEFAULT_NAME = "default"  # what a user types for the shipped weights, wherever weights are named


def resolve_weights(path: str | Path) -> Path:
    """`default` is the shipped weights (unless a file of that name is here); any other path as given."""
    return DEFAULT_WEIGHTS if str(path) == DEFAULT_NAME and not Path(path).exists() else Path(path)


@dataclass(frozen=True)
class LoadedWeights:
    """A model rebuilt from a checkpoint, with what its file said about itself."""

    model: TreeFusionNet
    config: ModelConfig
    provenance: dict[str, Any]
    sha256: str
    path: Path


def save_weights(model: TreeFusionNet, path: str | Path, **provenance_fields: Any) -> Path:
    """Write `model` to `path` atomically with its config and provenance."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().cpu().contiguous() for name, tensor in model.state_dict().items()}
    _refuse_non_finite(state, str(path))
    metadata = {
        "format": FORMAT,
        "config": model.config.to_json(),
        "provenance": json.dumps(provenance(**provenance_fields), sort_keys=True),
    }
    with atomic_path(path) as staged:
        save_file(state, str(staged), metadata=metadata)
    return Path(path)


def read_metadata(path: str | Path) -> dict[str, str]:
    """The string metadata of a safetensors file, refusing anything that is not one."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise TreefuseError(f"weights file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            return dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError) as exc:
        raise TreefuseError(f"{path} is not a readable safetensors file ({one_line(exc)})") from None


def load_weights(path: str | Path) -> LoadedWeights:
    """Rebuild the model a treefuse checkpoint describes and load its tensors into it."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    metadata = read_metadata(path)
    if metadata.get("format") != FORMAT or "config" not in metadata:
        raise TreefuseError(f"{path} is a safetensors file but not treefuse weights (no '{FORMAT}' metadata)")
    try:
        config = ModelConfig.from_dict(json.loads(metadata["config"]))
        record = json.loads(metadata.get("provenance", "{}"))
    except json.JSONDecodeError:
        raise TreefuseError(f"{path}: the config in its metadata is not valid JSON") from None
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise TreefuseError(f"{path} is corrupt ({one_line(exc)})") from None
    model = TreeFusionNet(config)
    _check_matches_config(state, model, path)
    _refuse_non_finite(state, str(path))
    model.load_state_dict(state)
    return LoadedWeights(model.eval(), config, record, sha256_file(path), path)


def _check_matches_config(state: dict[str, torch.Tensor], model: TreeFusionNet, path: Path) -> None:
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {extra[:3]}"
        raise TreefuseError(f"{path}: tensors do not match the config in its metadata ({detail})")
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise TreefuseError(
                f"{path}: tensor {name} has shape {tuple(state[name].shape)}, its config needs {tuple(tensor.shape)}")
        if state[name].dtype != torch.float32:
            raise TreefuseError(f"{path}: tensor {name} is {state[name].dtype}, expected float32")


def _refuse_non_finite(state: dict[str, torch.Tensor], where: str) -> None:
    for name, tensor in state.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise TreefuseError(f"{where}: tensor {name} holds NaN or Inf values")
