"""Start or resume a run and drive the trainer: log, validate, checkpoint, write weights."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from treefuse.checkpoint import save_weights
from treefuse.errors import TreefuseError
from treefuse.data.street_rain import load_preset, preset_path
from treefuse.train.ddp import World, join, leave, world_from_env
from treefuse.train.datasets import clean_photo_files, load_pairs, load_photos, manifest
from treefuse.train.patches import PatchSampler
from treefuse.train.run_dir import RunDir
from treefuse.train.synthetic_pool import render_pool
from treefuse.train.train_config import TrainConfig, set_dotted
from treefuse.train.trainer import Trainer, TrainingData, learning_rate, pick_device

# Sections that only change how fast a step runs or how often the run reports; may differ on resume.
RESUMABLE_SECTIONS = ("speed", "run")
# Keys added after runs existed, with the value that means "as before": left out of the config hash
# at that value, so older runs still resume.
LATER_KEYS_AS_BEFORE = {("data", "synthetic_pool"): 0, ("data", "synthetic_exclude"): [],
                        ("data", "street_fraction"): 0.0, ("data", "rain_preset"): "street",
                        ("data", "street_dir"): "", ("data", "street_exclude"): [],
                        ("data", "street_frame_fraction"): 0.0, ("data", "street_long_side"): 640,
                        ("optim", "activation_noise"): "", ("optim", "noise_calibration"): ""}
# Pool images are twice the patch side, so patches cut from them still vary in position.
POOL_CROP_FACTOR = 2


@dataclass
class Session:
    """A run folder with a trainer positioned at its next step."""

    run: RunDir
    config: TrainConfig
    trainer: Trainer
    train_seconds: float = 0.0  # spent in earlier sessions of this run


def load_training_data(config: TrainConfig) -> tuple[TrainingData, dict[str, Any]]:
    """Decode the training pairs, clean photos and validation pairs the config names."""
    data = config.data
    pairs, pair_files = [], []
    refuse_judge_pairs(data.train_dirs)
    if data.train_dirs and data.synthetic_fraction < 1.0:
        pairs, pair_files = load_pairs(data.train_dirs, data.train_range)
    photo_files = clean_photo_files(data.synthetic_dir, data.synthetic_exclude) if data.synthetic_fraction > 0.0 else []
    preset = load_preset(data.rain_preset) if data.street_fraction > 0.0 and data.synthetic_fraction > 0.0 else None
    photos = load_photos(photo_files, data.patch_size)
    street_files = clean_photo_files(data.street_dir, data.street_exclude) if data.street_dir else []
    backdrops = street_backdrops(photos, street_files, preset, data.patch_size, data.street_long_side)
    validation, validation_files = load_pairs([data.val_dir], data.val_range) if data.val_dir else ([], [])
    overlap = {f.rain for f in pair_files} & {f.rain for f in validation_files}
    if overlap:
        raise TreefuseError(f"validation pair {sorted(overlap)[0]} is also a training pair; "
                            "make data.train_range and data.val_range disjoint")
    noise_files = calibration_files(config.optim.noise_calibration) if config.optim.noise_calibration else []
    record, digest = manifest({
        "train_rain": [f.rain for f in pair_files], "train_clean": [f.clean for f in pair_files],
        "synthetic_clean": photo_files, **({"street_clean": street_files} if street_files else {}), "validation": [p for f in validation_files for p in (f.rain, f.clean)],
        "init_weights": [Path(config.optim.init_weights)] if config.optim.init_weights else [],
        **({"noise_calibration": noise_files} if noise_files else {}),
        **({"rain_preset": [preset_path(data.rain_preset)]} if preset else {})})
    pool = render_pool(photos, data.synthetic_pool, POOL_CROP_FACTOR * data.patch_size, data.heavy_fraction,
                       config.optim.seed, street_fraction=data.street_fraction, street_preset=preset,
                       ) if data.synthetic_pool and data.synthetic_fraction > 0.0 else ()
    sampler = PatchSampler(pairs, photos, data.patch_size, data.batch_size, data.synthetic_fraction,
                           data.heavy_fraction, data.flips, config.optim.seed, pool, data.street_fraction, preset,
                           **backdrops, street_frame_fraction=data.street_frame_fraction)
    return TrainingData(sampler, validation, digest), record


def calibration_files(folder: str) -> list[Path]:
    """The files of a calibration set (optim.noise_calibration), for the data manifest."""
    from treefuse.calib.store import MANIFEST, TENSOR_FILE

    files = [Path(folder) / MANIFEST, Path(folder) / TENSOR_FILE]
    if not all(f.is_file() for f in files):
        raise TreefuseError(f"optim.noise_calibration {folder} is not a calibration set; build one with "
                            "treefuse calib build")
    return files


# Renderers whose rain is for scoring only, by the name their synth.json records (train/ never imports them).
JUDGE_ONLY_RENDERERS = {"judge-jorder-accumulation": "data/judge_rain.py", "particle-garg-nayar": "data/particle_rain.py"}


def refuse_judge_pairs(folders: tuple[str, ...] | list[str]) -> None:
    """A judge renderer's rain (JUDGE_ONLY_RENDERERS) is for scoring only: a folder of it is never trained on."""
    for folder in folders:
        record = Path(folder) / "synth.json"
        if not record.is_file():
            continue
        try:
            renderer = json.loads(record.read_text()).get("renderer")
        except (json.JSONDecodeError, AttributeError):
            raise TreefuseError(f"{record} is not a readable synth record; render the pairs again") from None
        if renderer in JUDGE_ONLY_RENDERERS:
            raise TreefuseError(f"{folder} holds judge rain ({renderer}, {JUDGE_ONLY_RENDERERS[renderer]}), which is "
                                "never trained on; render training pairs with treefuse synth")


def street_backdrops(photos: list, street_files: list[Path], preset: Any, patch_size: int,
                     long_side: int) -> dict[str, tuple]:
    """Road frames and every backdrop's depth estimate, for a depth-aware preset (else nothing)."""
    from treefuse.data.depth_rain import DepthRainPreset

    if not isinstance(preset, DepthRainPreset):
        if street_files:
            raise TreefuseError("data.street_dir needs a depth-aware rain preset (renderer: depth), e.g. street")
        return {}
    from treefuse.data.scene_depth import estimate_depth
    from treefuse.data.street_split import load_frame

    frames = [load_frame(path, long_side) for path in street_files]
    small = [p for p, f in zip(street_files, frames) if min(f.shape[:2]) < patch_size]
    if small:
        raise TreefuseError(f"{small[0]} is smaller than a {patch_size}px patch at data.street_long_side={long_side}")
    return {"scenes": tuple(estimate_depth(p) for p in photos), "street_photos": tuple(frames),
            "street_scenes": tuple(estimate_depth(f) for f in frames)}


def learning_sections_sha256(config: TrainConfig) -> str:
    """Hash of the config sections that decide what is learned."""
    learned = {k: v for k, v in config.to_dict().items() if k not in RESUMABLE_SECTIONS}
    for (section, key), as_before in LATER_KEYS_AS_BEFORE.items():
        if learned[section].get(key) == as_before:
            del learned[section][key]
    return hashlib.sha256(json.dumps(learned, sort_keys=True).encode()).hexdigest()


def _trainer(config: TrainConfig, data: TrainingData, world: World) -> Trainer:
    device = pick_device(config.speed.device, world)
    join(world, device)
    return Trainer(config, data, device, world)


def start_session(config: TrainConfig, out: str | Path, world: World | None = None) -> Session:
    """A new run: data is loaded before the folder is made, so bad input leaves nothing behind."""
    world = world or world_from_env()
    if world.is_main and Path(out).exists() and (not Path(out).is_dir() or any(Path(out).iterdir())):
        raise TreefuseError(f"{out} already exists and is not empty; pick a new --out or use --resume {out}")
    data, record = load_training_data(config)
    trainer = _trainer(config, data, world)
    if not world.is_main:
        return Session(RunDir(out), config, trainer)
    run = RunDir.create(out, config)
    run.write_manifest(record, data.manifest_sha256)
    return Session(run, config, trainer)


def resume_session(path: str | Path, overrides: list[str], world: World | None = None) -> Session:
    """Reopen a run at its newest whole checkpoint (or at step 0 when it has none)."""
    world = world or world_from_env()
    run, stored = RunDir.open(path)
    config = stored
    if overrides:
        merged = stored.to_dict()
        for assignment in overrides:
            set_dotted(merged, assignment)
        config = TrainConfig.from_dict(merged)
        changed = _changed_keys(stored.to_dict(), config.to_dict())
        if changed:
            raise TreefuseError(f"cannot resume {run.path} with a different config ({', '.join(changed)}); "
                                f"only {'/'.join(RESUMABLE_SECTIONS)}.* may change on resume")
    data, _ = load_training_data(config)
    trainer = _trainer(config, data, world)
    checkpoint = run.latest_checkpoint()
    if checkpoint is not None:
        tensors, record = checkpoint
        if record.get("learning_config_sha256") != learning_sections_sha256(config):
            raise TreefuseError(f"{run.path}: its config.yaml differs from the config its checkpoints were made with; "
                                "restore it or start a new run")
        if record.get("data_manifest_sha256") != data.manifest_sha256:
            raise TreefuseError(f"{run.path}: the training or validation files changed since the run started; "
                                "restore them or start a new run")
        if record.get("world_size", 1) != world.size:
            raise TreefuseError(f"{run.path} was trained by {record.get('world_size', 1)} process(es); resume it with "
                                f"as many (this is {world.size}), or the data order and batch size would change")
        trainer.load_state(tensors, record)
    if world.is_main:
        run.truncate_log(trainer.step)
    return Session(run, config, trainer, float(checkpoint[1].get("train_seconds", 0.0)) if checkpoint else 0.0)


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [f"{section}.{key}" for section in old if section not in RESUMABLE_SECTIONS
            for key in old[section] if old[section][key] != new[section][key]]


def save_checkpoint(session: Session, elapsed_s: float) -> None:
    """Checkpoint the trainer's current step."""
    tensors, record = session.trainer.state()
    record.update({"learning_config_sha256": learning_sections_sha256(session.config),
                   "data_manifest_sha256": session.trainer.data.manifest_sha256, "train_seconds": elapsed_s,
                   "world_size": session.trainer.world.size})
    session.run.save_checkpoint(session.trainer.step, tensors, record, session.config.run.keep_checkpoints)


def describe_device(device: torch.device) -> str:
    """The device in words, for provenance and benchmark tables."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from treefuse.device import cpu_facts

    return f"{cpu_facts()['model']}, {torch.get_num_threads()} threads"


def write_weights(session: Session, path: Path, elapsed_s: float, kind: str) -> None:
    """Save the trainer's model as treefuse weights with the run's provenance."""
    trainer = session.trainer
    save_weights(trainer.model, path, kind=kind, config=session.config.to_dict(),
                 data_manifest_sha256=trainer.data.manifest_sha256, steps=trainer.step,
                 device=describe_device(trainer.device), train_seconds=round(elapsed_s, 1),
                 validation_split=session.config.data.val_name, best_validation=trainer.best,
                 processes=trainer.world.size)


def train(session: Session, stop_after: int | None = None, progress: bool = True,
          on_step: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Run from the trainer's step to the end (or `stop_after` more steps); returns a summary."""
    from treefuse.progress import progress_bar

    config, trainer, run = session.config, session.trainer, session.run
    main = trainer.world.is_main
    total = config.optim.steps
    last = total if stop_after is None else min(total, trainer.step + stop_after)
    elapsed = session.train_seconds
    bar = progress_bar(None, progress and main, total=total, initial=trainer.step, unit="it", dynamic_ncols=True,
                       mininterval=0.5)
    # None, not NaN, when no step runs (a finished run resumed): the summary is strict JSON.
    window_seconds, window_steps, loss = 0.0, 0, None
    while trainer.step < last:
        step_start = time.perf_counter()
        trainer.feed_data(trainer.step)
        loss = trainer.optimize_parameters()
        step_seconds = time.perf_counter() - step_start
        step, window_steps, window_seconds = trainer.step, window_steps + 1, window_seconds + step_seconds
        elapsed += step_seconds
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}", lr=f"{learning_rate(config, step - 1):.0e}", refresh=False)
        if main and step % config.run.log_every == 0:
            run.log({"step": step, "loss": loss, "lr": learning_rate(config, step - 1),
                     "it_per_s": window_steps / max(window_seconds, 1e-9)})
            window_seconds, window_steps = 0.0, 0
        if main and (step % config.run.validate_every == 0 or step == total):
            _validate(session, elapsed)
        if main and (step % config.run.checkpoint_every == 0 or step == last):
            session.train_seconds = elapsed
            save_checkpoint(session, elapsed)
        if on_step is not None:
            on_step(step)
    bar.close()
    if main and trainer.step == total and not run.final_weights.is_file():
        write_weights(session, run.final_weights, elapsed, "final")
    leave(trainer.world)
    return {"step": trainer.step, "steps": total, "loss": loss, "best": trainer.best,
            "final_weights": str(run.final_weights) if run.final_weights.is_file() else None}


def _validate(session: Session, elapsed: float) -> None:
    result = session.trainer.validation()
    if not result:
        return
    session.run.log({"step": session.trainer.step, **result})
    if result.get("best"):
        write_weights(session, session.run.best_weights, elapsed, "best")
