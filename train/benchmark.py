"""Training throughput of the speed variants, measured side by side in one process."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from treefuse.errors import one_line
from treefuse.files import write_json_atomic
from treefuse.provenance import provenance
from treefuse.train.data_benchmark import time_batch_paths
from treefuse.train.datasets import ImagePair
from treefuse.train.patches import PatchSampler
from treefuse.train.session import describe_device
from treefuse.train.train_config import SpeedConfig, TrainConfig, load_train_config
from treefuse.train.trainer import Trainer, TrainingData, cpu_has_bf16, pick_device

# (label, speed overrides): the baseline first, then one change at a time, then the best mix.
VARIANTS: tuple[tuple[str, dict[str, object]], ...] = (
    ("fp32", {"precision": "fp32"}),
    ("fp32 channels_last", {"precision": "fp32", "channels_last": True}),
    ("fp32 fold", {"precision": "fp32", "fold": True}),
    ("bf16", {"precision": "bf16"}),
    ("bf16 channels_last", {"precision": "bf16", "channels_last": True}),
    ("bf16 fold", {"precision": "bf16", "fold": True}),
    ("bf16 fold channels_last", {"precision": "bf16", "fold": True, "channels_last": True}),
    ("fp32, 1 thread", {"precision": "fp32", "threads": 1}),
    ("bf16, 1 thread", {"precision": "bf16", "threads": 1}),
    ("bf16 fold channels_last, 1 thread", {"precision": "bf16", "fold": True, "channels_last": True, "threads": 1}),
)


def random_data(config: TrainConfig) -> TrainingData:
    """Random in-memory pairs: the benchmark times the step, not the disk."""
    rng = np.random.default_rng(0)
    pairs = [ImagePair(str(i), rng.integers(0, 256, (160, 160, 3), dtype=np.uint8),
                       rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)) for i in range(4)]
    sampler = PatchSampler(pairs, [], config.data.patch_size, config.data.batch_size, 0.0, 0.0, True, 0)
    return TrainingData(sampler, [], "benchmark")


def build_variant(config: TrainConfig, speed: SpeedConfig) -> Trainer:
    """A trainer for one speed variant, fed a fixed batch."""
    trainer = Trainer(dataclasses.replace(config, speed=speed), random_data(config), pick_device(speed.device))
    trainer.feed_data(0)
    return trainer


def time_variant(trainer: Trainer, steps: int, warmup: int = 2) -> float:
    """Steps per second of one variant (its thread count applied first)."""
    if trainer.config.speed.threads:
        torch.set_num_threads(trainer.config.speed.threads)
    for _ in range(warmup):
        trainer.optimize_parameters()
    _sync(trainer.device)
    start = time.perf_counter()
    for _ in range(steps):
        trainer.optimize_parameters()
    _sync(trainer.device)
    return steps / (time.perf_counter() - start)


def _may_fail_here(speed: SpeedConfig) -> bool:
    """torch.compile needs a working compiler toolchain and CUDA graphs a driver that captures: where either is
    missing, that variant's failure is this machine's result, and the other variants are still measured."""
    return speed.compile or speed.cuda_graph


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_benchmark(config_path: str | None, overrides: list[str], steps: int = 10, rounds: int = 2,
                  json_path: str | None = None) -> list[tuple[str, float]]:
    """Print it/s of every variant for the config's model and batch (best of `rounds`); returns the rows.

    `--set speed.compile=true` adds torch.compile variants on the CPU (on CUDA they are always
    timed); `json_path` also writes the figures with device and versions, atomically.
    """
    config = load_train_config(config_path or "paper", overrides)
    base = config.speed
    device = pick_device(base.device)
    variants = list(VARIANTS)
    if device.type == "cuda":
        variants += [("fp16 fold", {"precision": "fp16", "fold": True}),
                     ("bf16 fold compile", {"precision": "bf16", "fold": True, "compile": True}),
                     ("bf16 fold channels_last cuda_graph",
                      {"precision": "bf16", "fold": True, "channels_last": True, "cuda_graph": True})]
    elif base.compile:
        variants += [("fp32 compile", {"precision": "fp32", "compile": True}),
                     ("bf16 fold channels_last compile",
                      {"precision": "bf16", "fold": True, "channels_last": True, "compile": True})]
    print(f"model: {config.model.blocks} blocks x {config.model.channels} ch; batch {config.data.batch_size} "
          f"of {config.data.patch_size}x{config.data.patch_size}; best of {rounds} rounds of {steps} timed steps")
    original_threads = torch.get_num_threads()
    threads = base.threads or original_threads
    torch.set_num_threads(threads)
    described = describe_device(device)
    print(f"device: {described} (variants may set their own); cpu bf16: {cpu_has_bf16()}; torch {torch.__version__}")
    trainers = [(label, build_variant(config, dataclasses.replace(
        base, device=device.type, **{"compile": False, "threads": threads, **changes}))) for label, changes in variants]
    # Round-robin and best-of: on a shared machine, load drifts; each variant gets the same chances.
    # The first round also absorbs torch.compile's compile time (warm-up steps).
    best = {label: 0.0 for label, _ in trainers}
    failed: dict[str, str] = {}
    for _ in range(rounds):
        for label, trainer in trainers:
            if label not in failed:
                try:
                    best[label] = max(best[label], time_variant(trainer, steps))
                except Exception as exc:  # noqa: BLE001 - see _may_fail_here
                    if not _may_fail_here(trainer.config.speed):
                        raise
                    failed[label] = one_line(exc)
    rows = [(label, rate) for label, rate in best.items() if label not in failed]
    for label, rate in rows:
        print(f"  {label:<34} {rate:7.2f} it/s   {rate / rows[0][1]:5.2f}x fp32", flush=True)
    for label, message in failed.items():
        print(f"  {label:<34} FAILED on this machine: {message}", flush=True)
    print(f"cutting one batch of {config.data.batch_size} (ms; beside a step of {1000 / max(best.values()):.0f} ms "
          "at the fastest variant):")
    cuts = time_batch_paths(config, device)
    for label, ms in cuts:
        print(f"  {label:<34} {ms:7.2f} ms", flush=True)
    torch.set_num_threads(original_threads)
    if json_path:
        write_json_atomic(json_path, {
            "kind": "treefuse-train-benchmark", "device": described, "threads": threads, "cpu_bf16": cpu_has_bf16(),
            "batch_size": config.data.batch_size, "patch_size": config.data.patch_size, "steps": steps,
            "rounds": rounds, "model": config.model.to_dict(),
            "it_per_s": dict(rows), "failed": failed, "batch_ms": dict(cuts), "provenance": provenance()})
    return rows


if __name__ == "__main__":
    run_benchmark(None, [])

