"""Weight-space blending (WiSE-FT, Wortsman et al., 2022) of a base model and its fine-tuned child.

A fine-tune on a camera's own rain can forget some of what the base weights knew (heavy
Rain100H-style streaks); `(1 - alpha) * base + alpha * tuned`, tensor by tensor, trades the two
back without training. Both files must hold the same model config; the blend's provenance names
both parents by sha256 and keeps their provenance records.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from treefuse.checkpoint import load_weights, save_weights
from treefuse.errors import TreefuseError


def blend_weights(base: str | Path, tuned: str | Path, alpha: float, out: str | Path) -> dict[str, Any]:
    """Write `(1 - alpha) * base + alpha * tuned` to `out`; return what was written."""
    if not (math.isfinite(alpha) and 0.0 <= alpha <= 1.0):
        raise TreefuseError(f"--alpha must be a number from 0 (the base) to 1 (the tuned weights), got {alpha}")
    out = Path(out)
    for name, parent in (("--base", base), ("--tuned", tuned)):
        if out.exists() and Path(parent).exists() and out.resolve() == Path(parent).resolve():
            raise TreefuseError(f"--out {out} is the {name} weights; inputs are never overwritten: choose a new file")
    first, second = load_weights(base), load_weights(tuned)
    if first.config != second.config:
        raise TreefuseError(f"--base {base} and --tuned {tuned} hold different models ({first.config} vs "
                            f"{second.config}); blend a model with its own fine-tune")
    tuned_state = second.model.state_dict()
    blended = {name: torch.lerp(tensor, tuned_state[name], alpha) for name, tensor in first.model.state_dict().items()}
    first.model.load_state_dict(blended)
    parents = {"alpha": alpha,
               "base": {"path": str(base), "sha256": first.sha256, "provenance": first.provenance},
               "tuned": {"path": str(tuned), "sha256": second.sha256, "provenance": second.provenance}}
    save_weights(first.model, out, kind="blend", blend=parents)
    return {"out": str(out), "alpha": alpha, "base_sha256": first.sha256, "tuned_sha256": second.sha256}
