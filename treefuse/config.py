"""Frozen, typed model configuration with the paper's ablation knobs."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from treefuse.errors import TreefuseError, one_line

FUSIONS = ("tree", "sum")


@dataclass(frozen=True)
class ModelConfig:
    """Shape of the network; the defaults are the paper's 35,427-parameter model."""

    in_channels: int = 3
    channels: int = 16
    blocks: int = 8  # paper's L: 6, 8, 10 or 14 dilated blocks
    dilation_factor: int = 4  # DF: dilations 1..DF share one 3x3 kernel per block
    within_fusion: str = "tree"  # "sum" + across "tree" = the paper's NetworkA
    across_fusion: str = "tree"  # "sum" + within "tree" = NetworkW; both "sum" = JORDER-style

    def __post_init__(self) -> None:
        for name in ("in_channels", "channels", "blocks", "dilation_factor"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise TreefuseError(f"model config: {name} must be a positive integer, got {value!r}")
        for name in ("within_fusion", "across_fusion"):
            if getattr(self, name) not in FUSIONS:
                raise TreefuseError(
                    f"model config: {name} must be one of {FUSIONS}, got {getattr(self, name)!r}")

    @property
    def dilations(self) -> tuple[int, ...]:
        return tuple(range(1, self.dilation_factor + 1))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelConfig":
        """Build from a mapping, refusing keys the model does not know."""
        if not isinstance(data, dict):
            raise TreefuseError(f"model config must be a mapping, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TreefuseError(f"model config: unknown key(s) {unknown}; known keys are {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ModelConfig":
        """Load from a YAML file holding either the fields or a `model:` section."""
        try:
            data = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise TreefuseError(f"config file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise TreefuseError(f"config file {path} is not valid YAML: {one_line(exc)}") from None
        if isinstance(data, dict) and "model" in data:
            data = data["model"]
        return cls.from_dict(data or {})
