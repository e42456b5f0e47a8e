"""Quantization-aware fine-tuning: train a fake-quantized network with the paper's loss, resumably.

The network is any module whose forward pass fake-quantizes as the target runtime will, composed
by the CLI from the target's scheme (ONNX Runtime and TensorRT QDQ: `treefuse.export.onnx.qat`;
XNNPACK: `treefuse.export.pt2e.qat`; Core ML: `treefuse.export.coreml.qat`). Each
step's loss is the paper's 0.4 MSE + 0.6 (1 - SSIM) against the clean image and against the
FP32 network's own output, mixed by `distill`: the INT8 model must stay close to FP32 (its
gate) while keeping the task. Batches are a pure function of (seed, step), so a run resumes
exactly from its newest checkpoint in the usual run folder (`train/run_dir.py`; what QAT adds to
it: `treefuse/qat_run.py`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from treefuse.checkpoint import load_weights
from treefuse.folding import fold
from treefuse.qat_run import save_learned, unique_tensors, with_aliases
from treefuse.train.losses import derain_loss
from treefuse.train.run_dir import RunDir, pack_state, unpack_state
from treefuse.train.train_config import TrainConfig


@dataclass(frozen=True)
class QatRecipe:
    """What QAT learns beyond the shared training config: the distillation mix and the scales' step size."""

    distill: float = 1.0  # weight of the FP32-output target; 1 - distill goes to the clean image
    scale_lr_factor: float = 10.0  # scales' learning rate relative to the weights'
    freeze_observers_step: int | None = None  # observer schemes: ranges stop moving here, the weights fit them


def qat_config(data_dir: str, steps: int, *, patch_size: int = 64, batch_size: int = 8, lr: float = 1e-4,
               threads: int = 1, seed: int = 0, synthetic_dir: str = "../shared/data/clean",
               synthetic_fraction: float = 0.5, checkpoint_every: int = 50, init_weights: str = "") -> TrainConfig:
    """The shared training config of a QAT run: real pairs (all of them) plus synthetic rain, no validation."""
    return TrainConfig.from_dict({
        "data": {"train_dirs": [data_dir], "train_range": "", "synthetic_dir": synthetic_dir if synthetic_fraction else "",
                 "synthetic_fraction": synthetic_fraction, "val_dir": "", "val_range": "", "val_name": "",
                 "patch_size": patch_size, "batch_size": batch_size},
        "optim": {"steps": steps, "lr": lr, "lr_milestones": [max(1, (2 * steps) // 3)], "lr_gamma": 0.1,
                  "seed": seed, "init_weights": init_weights},
        "speed": {"device": "cpu", "precision": "fp32", "threads": threads},
        "run": {"log_every": 10, "validate_every": max(steps, 1), "checkpoint_every": checkpoint_every,
                "keep_checkpoints": 2}})


def fp32_teacher(weights_path: str | Path) -> Callable[[torch.Tensor], torch.Tensor]:
    """The FP32 network of the weights QAT starts from (folded, frozen): the outputs INT8 must match."""
    network = fold(load_weights(weights_path).model).requires_grad_(False)

    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return network(x)

    return run


class QatTrainer:
    """Adam over a fake-quant network's weights and scales; one step per call, state for checkpoints."""

    def __init__(self, network: nn.Module, teacher: Callable[[torch.Tensor], torch.Tensor], config: TrainConfig,
                 sampler: Any, weights: list[nn.Parameter], scales: list[nn.Parameter], recipe: QatRecipe,
                 observers: Callable[[bool], Any] | None = None) -> None:
        if config.speed.threads:
            torch.set_num_threads(config.speed.threads)
        self.network, self.teacher, self.config, self.sampler, self.recipe = network, teacher, config, sampler, recipe
        self.observers = observers  # switches the scheme's range observers (None: its scales are learned instead)
        groups = [{"params": weights, "lr_factor": 1.0}]
        if scales:  # observer schemes have no learned scales
            groups.append({"params": scales, "lr_factor": recipe.scale_lr_factor})
        self.optimizer = torch.optim.Adam(groups)
        self.step = 0

    def loss(self, rainy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """The paper's loss against the clean image and the FP32 output, mixed by `distill`."""
        output = self.network(rainy)
        total = 0.0
        optim = self.config.optim
        if self.recipe.distill > 0:
            total = self.recipe.distill * derain_loss(output, self.teacher(rainy), optim.mse_weight, optim.ssim_weight)
        if self.recipe.distill < 1:
            total = total + (1 - self.recipe.distill) * derain_loss(output, clean, optim.mse_weight, optim.ssim_weight)
        return total

    def optimize(self) -> float:
        """One Adam step on this step's batch; returns the loss before the step."""
        optim = self.config.optim
        lr = optim.lr * optim.lr_gamma ** sum(self.step >= m for m in optim.lr_milestones)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group["lr_factor"]
        freeze = self.recipe.freeze_observers_step
        if self.observers is not None and freeze is not None and self.step >= freeze:
            self.observers(False)  # a pure function of the step, so a resumed run freezes where a straight one did
        rainy, clean = (torch.from_numpy(b) for b in self.sampler.batch(self.step))
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.loss(rainy, clean)
        loss.backward()
        self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        optimizer = self.optimizer.state_dict()
        model, aliases = unique_tensors(self.network.state_dict())  # shared fake-quantizers are written once
        tensors = pack_state(model, optimizer)
        return tensors, {"optimizer_param_groups": optimizer["param_groups"], "aliases": aliases}

    def load_state(self, tensors: dict[str, torch.Tensor], record: dict[str, Any]) -> None:
        model, slots = unpack_state(tensors)
        self.network.load_state_dict(with_aliases(model, record.get("aliases", {})))
        self.optimizer.load_state_dict({"state": slots, "param_groups": record["optimizer_param_groups"]})
        self.step = int(record["step"])


def resume_at_newest(run: RunDir, trainer: QatTrainer) -> None:
    """Position the trainer at the run's newest whole checkpoint (step 0 without one)."""
    checkpoint = run.latest_checkpoint()
    if checkpoint is not None:
        trainer.load_state(*checkpoint)
    run.truncate_log(trainer.step)


def fine_tune(run: RunDir, trainer: QatTrainer, stop_after: int | None = None,
              log: Callable[[str], None] = print, progress: bool = False) -> dict[str, Any]:
    """Run to the config's last step (or `stop_after` more), checkpointing and writing RUN/learned.safetensors.

    A line (with the time left) follows the first step of every call and every `log_every` steps; metrics.jsonl
    gets step 1 and every `log_every` (a pure function of the step: a resumed run logs what a straight one did)."""
    from treefuse.progress import progress_bar

    config, steps = trainer.config, trainer.config.optim.steps
    last = steps if stop_after is None else min(steps, trainer.step + stop_after)
    first = trainer.step + 1
    bar = progress_bar(None, progress, total=steps, initial=trainer.step, desc="QAT", unit="step", mininterval=0.5)
    window_loss, window_start, loss, started = [], time.perf_counter(), float("nan"), time.perf_counter()
    while trainer.step < last:
        loss = trainer.optimize()
        window_loss.append(loss)
        bar.update(1)
        logged = trainer.step % config.run.log_every == 0 or trainer.step == 1
        if logged or trainer.step == first:
            seconds = time.perf_counter() - window_start
            entry = {"step": trainer.step, "loss": sum(window_loss) / len(window_loss),
                     "it_per_s": len(window_loss) / max(seconds, 1e-9)}
            if logged:
                run.log(entry)
            left_s = (last - trainer.step) * (time.perf_counter() - started) / (trainer.step - first + 1)
            log(f"step {trainer.step}/{steps} loss {entry['loss']:.5f} ({entry['it_per_s']:.2f} it/s, "
                f"{_duration(left_s)} left{' in this chunk' if last < steps else ''})")
            window_loss, window_start = [], time.perf_counter()
        if trainer.step % config.run.checkpoint_every == 0 or trainer.step == last:
            save(run, trainer)
    bar.close()
    return {"step": trainer.step, "steps": steps, "loss": loss}


def _duration(seconds: float) -> str:
    """Seconds in the unit a person reads: '40 s', '2.3 min', '1.5 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    return f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def save(run: RunDir, trainer: QatTrainer) -> None:
    """Checkpoint (network + Adam) and the network's state alone as RUN/learned.safetensors (what exporters read)."""
    tensors, record = trainer.state()
    run.save_checkpoint(trainer.step, tensors, record, trainer.config.run.keep_checkpoints)
    save_learned(run.path, trainer.network.state_dict(), trainer.step, trainer.config.optim.steps)
