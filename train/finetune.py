"""The fine-tune path: a training config for a camera's own pairs, from shipped or given weights.

`treefuse train --init W --data PAIRED_DIR --val SPLIT --steps N --out RUN` builds its config
here on top of `configs/finetune.yaml`. SPLIT is either another paired folder or a range of
pair numbers inside PAIRED_DIR (`41-50`), which is then left out of training.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from treefuse.checkpoint import DEFAULT_WEIGHTS, read_metadata
from treefuse.errors import TreefuseError
from treefuse.train.datasets import find_pairs, select
from treefuse.train.train_config import TrainConfig, load_train_config

RANGE = re.compile(r"\d+(-\d+)?(,\d+(-\d+)?)*")
INIT_SCORES = "init_scores.json"


def init_weights_path(init: str | None) -> Path:
    """`default` (or nothing) is the shipped weights; anything else must be a weights file."""
    path = DEFAULT_WEIGHTS if init in (None, "", "default") else Path(init)
    if not path.is_file():
        raise TreefuseError(f"--init {init}: no such weights file; give a .safetensors path or 'default'")
    return path


def finetune_config(init: str | None, data: str, val: str | None, steps: int,
                    overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """The config of a fine-tune run; user --set overrides come last and win."""
    if steps < 1:
        raise TreefuseError(f"--steps must be at least 1, got {steps}")
    weights = init_weights_path(init)
    model = json.loads(read_metadata(weights).get("config", "{}"))
    pairs = find_pairs(data)  # refuses a folder that is not a pair layout, one line
    sets = [f"data.train_dirs=[{json.dumps(data)}]", f"optim.init_weights={json.dumps(str(weights))}",
            f"optim.steps={steps}", f"optim.lr_milestones=[{max(1, int(steps * 0.8))}]",
            f"run.validate_every={min(250, steps)}", f"run.checkpoint_every={min(250, steps)}"]
    sets += [f"model.{key}={json.dumps(value)}" for key, value in model.items()]
    if val:
        sets += _validation(data, val, pairs)
    return load_train_config("finetune", [*sets, *overrides])


def _validation(data: str, val: str, pairs: list) -> list[str]:
    if Path(val).is_dir():
        return [f"data.val_dir={json.dumps(val)}", "data.val_range=''", f"data.val_name={json.dumps(val)}"]
    if not RANGE.fullmatch(val):
        raise TreefuseError(f"--val {val}: neither a paired folder nor a range of pair numbers like 41-50")
    held = {p.number for p in select(pairs, val)}
    if not held:
        raise TreefuseError(f"--val {val}: no pair in {data} has such a number")
    kept = sorted({p.number for p in pairs} - held)
    if not kept:
        raise TreefuseError(f"--val {val} holds out every pair of {data}; nothing is left to train on")
    return [f"data.train_range={','.join(map(str, kept))!r}", f"data.val_dir={json.dumps(data)}",
            f"data.val_range={val!r}", f"data.val_name={json.dumps(f'{data}:{val}')}"]


def score_start(session: Any) -> dict[str, Any]:
    """Validation of the initial weights and of the rainy inputs themselves, kept in the run folder."""
    import numpy as np

    from treefuse.metrics import calculate_psnr, calculate_ssim
    from treefuse.train.trainer import validate_model

    pairs = session.trainer.data.validation_pairs
    if not pairs:
        return {}
    start = validate_model(session.trainer.model, pairs, session.trainer.device)
    rainy = [(p.rain.astype(np.float32) / 255.0, p.clean.astype(np.float32) / 255.0) for p in pairs]
    scores = {"pairs": len(pairs), "init_psnr_y_db": start["val_psnr_y_db"], "init_ssim_y": start["val_ssim_y"],
              "input_psnr_y_db": float(np.mean([calculate_psnr(r, c, test_y_channel=True) for r, c in rainy])),
              "input_ssim_y": float(np.mean([calculate_ssim(r, c, test_y_channel=True) for r, c in rainy]))}
    from treefuse.files import write_json_atomic
    write_json_atomic(session.run.path / INIT_SCORES, scores)
    return scores
