"""The run folder: resolved config, metrics log, atomic checkpoints (last few kept), weights.

    RUN/config.yaml            the resolved config the run was started with
    RUN/data_manifest.json     every training/validation file with its sha256
    RUN/metrics.jsonl          one JSON object per logged step or validation
    RUN/checkpoints/step_N/    tensors.safetensors + state.json, written as one directory rename
    RUN/best.safetensors       best-validating weights;  RUN/final.safetensors  the last step's
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from treefuse.errors import TreefuseError
from treefuse.files import atomic_path, sha256_file, write_json_atomic
from treefuse.train.train_config import TrainConfig, read_yaml

CONFIG_NAME = "config.yaml"
CHECKPOINT_PREFIX = "step_"


class RunDir:
    """One training run's folder."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    config_path = property(lambda self: self.path / CONFIG_NAME)
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    manifest_path = property(lambda self: self.path / "data_manifest.json")
    checkpoints = property(lambda self: self.path / "checkpoints")
    best_weights = property(lambda self: self.path / "best.safetensors")
    final_weights = property(lambda self: self.path / "final.safetensors")

    @classmethod
    def create(cls, path: str | Path, config: TrainConfig) -> "RunDir":
        """Start a new run folder; refuses one that already holds anything."""
        run = cls(path)
        if run.path.exists() and (not run.path.is_dir() or any(run.path.iterdir())):
            raise TreefuseError(f"{run.path} already exists and is not empty; pick a new --out or use --resume {run.path}")
        run.path.mkdir(parents=True, exist_ok=True)
        with atomic_path(run.config_path) as staged:
            staged.write_text(config.to_yaml())
        return run

    @classmethod
    def open(cls, path: str | Path) -> tuple["RunDir", TrainConfig]:
        """An existing run folder and the config it was started with."""
        run = cls(path)
        if not run.config_path.is_file():
            raise TreefuseError(f"{run.path} is not a treefuse training run (no {CONFIG_NAME}); start one with --out")
        return run, TrainConfig.from_dict(read_yaml(run.config_path))

    def log(self, entry: dict[str, Any]) -> None:
        """Append one metrics record."""
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(entry, sort_keys=True) + "\n")
            handle.flush()

    def read_log(self) -> list[dict[str, Any]]:
        if not self.metrics_path.is_file():
            return []
        return [json.loads(line) for line in self.metrics_path.read_text().splitlines() if line.strip()]

    def truncate_log(self, step: int) -> None:
        """Drop records past `step`: a killed run logged steps its checkpoint does not hold."""
        kept = [e for e in self._parsable_log() if e.get("step", 0) <= step]
        with atomic_path(self.metrics_path) as staged:
            staged.write_text("".join(json.dumps(e, sort_keys=True) + "\n" for e in kept))

    def _parsable_log(self) -> list[dict[str, Any]]:
        # A kill can cut the last line short; everything before it is whole.
        entries = []
        if self.metrics_path.is_file():
            for line in self.metrics_path.read_text().splitlines():
                try:
                    entries.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return entries

    def save_checkpoint(self, step: int, tensors: dict[str, torch.Tensor], state: dict[str, Any], keep: int) -> Path:
        """Write a checkpoint as one atomic directory, then drop all but the newest `keep`."""
        from safetensors.torch import save_file

        target = self.checkpoints / f"{CHECKPOINT_PREFIX}{step:09d}"
        with atomic_path(target, directory=True, same_kind=lambda folder: (folder / "state.json").is_file()) as staged:
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(staged / "tensors.safetensors"))
            state = {**state, "step": step, "tensors_sha256": sha256_file(staged / "tensors.safetensors")}
            (staged / "state.json").write_text(json.dumps(state, sort_keys=True))
        for old in self.checkpoint_dirs()[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        return target

    def checkpoint_dirs(self) -> list[Path]:
        """Finished checkpoints, oldest first (staging folders start with a dot and are skipped)."""
        if not self.checkpoints.is_dir():
            return []
        return sorted(p for p in self.checkpoints.iterdir() if p.is_dir() and p.name.startswith(CHECKPOINT_PREFIX))

    def latest_checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
        """The newest checkpoint that reads back whole, or None when there is none."""
        for folder in reversed(self.checkpoint_dirs()):
            loaded = _read_checkpoint(folder)
            if loaded is not None:
                return loaded
        return None

    def write_manifest(self, record: dict[str, Any], digest: str) -> None:
        write_json_atomic(self.manifest_path, {"sha256": digest, "files": record})


def _read_checkpoint(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]] | None:
    from safetensors.torch import load_file

    tensors_path, state_path = folder / "tensors.safetensors", folder / "state.json"
    try:
        state = json.loads(state_path.read_text())
        if sha256_file(tensors_path) != state.get("tensors_sha256"):
            return None
        return load_file(str(tensors_path)), state
    except (OSError, ValueError, json.JSONDecodeError):
        return None


def pack_state(model: dict[str, torch.Tensor], optimizer: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A model's and an optimizer's state as the flat tensors of a checkpoint (`model.*`, `optim.N.slot`)."""
    tensors = {f"model.{k}": v for k, v in model.items()}
    for index, slots in optimizer["state"].items():
        for name, value in slots.items():
            tensors[f"optim.{index}.{name}"] = torch.as_tensor(value)
    return tensors


def unpack_state(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[int, dict[str, torch.Tensor]]]:
    """`pack_state` undone: the model's state dict and the optimizer's per-parameter slots."""
    model = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    slots: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            slots.setdefault(int(index), {})[name] = value
    return model, slots

