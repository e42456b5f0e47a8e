"""A generated model card for a finished run: data, steps, split, scores, command (Markdown)."""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from treefuse.checkpoint import read_metadata
from treefuse.errors import TreefuseError
from treefuse.files import atomic_path, sha256_file
from treefuse.train.run_dir import RunDir
from treefuse.train.train_config import NOISE_WEIGHT_LEVELS

CARD_NAME = "MODEL_CARD.md"


def write_model_card(path: str | Path, command: str = "") -> Path:
    """Write RUN/MODEL_CARD.md from the run folder's config, manifest, metrics and weights."""
    run, config = RunDir.open(path)
    if not run.final_weights.is_file():
        raise TreefuseError(f"{run.path} has no final.safetensors yet; finish the run (--resume) before its model card")
    provenance = json.loads(read_metadata(run.final_weights).get("provenance", "{}"))
    manifest = json.loads(run.manifest_path.read_text()) if run.manifest_path.is_file() else {"files": {}}
    files = manifest["files"]
    log = run.read_log()
    speeds = [e["it_per_s"] for e in log if "it_per_s" in e]
    validations = [e for e in log if "val_psnr_y_db" in e]
    start = _read_json(run.path / "init_scores.json")
    data, optim = config.data, config.optim
    weight_noise = ("; one step of the 7-bit per-channel grid at every conv weight"
                    if NOISE_WEIGHT_LEVELS.get(optim.activation_noise) else "")
    lines = [
        f"# Model card: `{run.path.name}`", "",
        f"Weights: `final.safetensors` (sha256 `{sha256_file(run.final_weights)}`), "
        f"{provenance.get('steps', '?')} steps of this run.",
        f"Started from: {_init_line(optim.init_weights, files)}", "",
        "## Data", "",
        f"- Training pairs: {len(files.get('train_rain', []))} from {', '.join(f'`{d}`' for d in data.train_dirs) or 'none'}"
        f"{f' (pairs {data.train_range})' if data.train_range else ''}",
        f"- Synthetic rain: {_synthetic_line(config, files)}",
        f"- Validation split: {_split_line(config, files)}",
        f"- Data manifest sha256: `{manifest.get('sha256', '?')}` (every file with its sha256: `data_manifest.json`)", "",
        "## Training", "",
        f"- Steps: {optim.steps}; Adam, lr {optim.lr:g}, x{optim.lr_gamma:g} at {list(optim.lr_milestones)}; "
        f"batch {data.batch_size} of {data.patch_size}x{data.patch_size} patches, flips {data.flips}; "
        f"loss {optim.mse_weight:g}·MSE + {optim.ssim_weight:g}·(1 − SSIM); seed {optim.seed}",
        *([f"- Activation noise: {optim.activation_noise} (one uint8 step at every tensor the ONNX Runtime INT8 "
           f"export quantizes, ranges from `{optim.noise_calibration}`{weight_noise}; train/activation_noise.py)"]
          if optim.activation_noise else []),
        f"- Device: {provenance.get('device', '?')}; precision {config.speed.precision}, fold {config.speed.fold}, "
        f"channels_last {config.speed.channels_last}",
        f"- Training time: {provenance.get('train_seconds', '?')} s; median {statistics.median(speeds):.2f} it/s"
        if speeds else f"- Training time: {provenance.get('train_seconds', '?')} s", "",
        "## Scores", "",
        *_score_lines(config, start, validations, int(provenance.get("steps", optim.steps))), "",
        "Whole validation images, FP32, outputs clipped to [0, 1], mean Y-channel (BT.601) PSNR and SSIM: "
        "the code `treefuse evaluate` uses.", "",
        "## Reproduce", "",
        f"```\n{command or 'treefuse train --config ' + str(run.config_path)}\n```",
        "Resume or extend: `treefuse train --resume RUN`. Export and check: see docs/training.md "
        "(the camera engineer's loop).", "",
    ]
    with atomic_path(run.path / CARD_NAME) as staged:
        staged.write_text("\n".join(lines))
    return run.path / CARD_NAME


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _init_line(init: str, files: dict[str, Any]) -> str:
    if not init:
        return "random initialisation"
    digest = next((e["sha256"] for e in files.get("init_weights", [])), "?")
    return f"`{init}` (sha256 `{digest}`)"


def _synthetic_line(config: Any, files: dict[str, Any]) -> str:
    data = config.data
    if not data.synthetic_fraction:
        return "none"
    street = (f"; {data.street_fraction:.0%} of them street rain (preset `{data.rain_preset}`)"
              if data.street_fraction else "")
    held = f"; held out: {', '.join(data.synthetic_exclude)}" if data.synthetic_exclude else ""
    return (f"{data.synthetic_fraction:.0%} of patches, on {len(files.get('synthetic_clean', []))} clean photos of "
            f"`{data.synthetic_dir}`{street}{held}")


def _split_line(config: Any, files: dict[str, Any]) -> str:
    data = config.data
    if not data.val_dir:
        return "none (no scores below)"
    count = len(files.get("validation", [])) // 2
    return (f"`{data.val_name}`: {count} pairs of `{data.val_dir}`{f' numbered {data.val_range}' if data.val_range else ''}, "
            "disjoint from the training pairs (checked when the run starts)")


def _score_lines(config: Any, start: dict[str, Any], validations: list[dict[str, Any]], steps: int) -> list[str]:
    if not config.data.val_dir:
        return ["No validation split was named (`--val`), so no scores."]
    rows = ["| weights | Y-PSNR (dB) | SSIM (Y) |", "|---|---|---|"]
    if start:
        rows.append(f"| rainy input itself | {start['input_psnr_y_db']:.2f} | {start['input_ssim_y']:.3f} |")
        rows.append(f"| initial weights (step 0) | {start['init_psnr_y_db']:.2f} | {start['init_ssim_y']:.3f} |")
    final = next((v for v in reversed(validations) if v["step"] == steps), None)
    if final:
        rows.append(f"| **final (step {steps})** | **{final['val_psnr_y_db']:.2f}** | **{final['val_ssim_y']:.3f}** |")
    best = max(validations, key=lambda v: v["val_psnr_y_db"], default=None)
    if best and best is not final:
        rows.append(f"| best validating (step {best['step']}, `best.safetensors`; picked on this split) | "
                    f"{best['val_psnr_y_db']:.2f} | {best['val_ssim_y']:.3f} |")
    trail = ", ".join(f"{v['val_psnr_y_db']:.2f}@{v['step']}" for v in validations)
    return [*rows, "", f"Validation during the run (dB@step): {trail or 'none'}."]
