"""Data-parallel training across processes started by `torchrun` (gloo on CPU, NCCL on GPU).

Every process trains on its own batches (seeded by rank) and DDP averages the gradients;
only rank 0 writes the run folder, validates and checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1


def world_from_env() -> World:
    """The world torchrun describes in RANK / WORLD_SIZE / LOCAL_RANK (one process without it)."""
    return World(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                 int(os.environ.get("LOCAL_RANK", 0)))


def join(world: World, device: torch.device) -> None:
    """Join the process group (once) when there is more than one process."""
    import torch.distributed as dist

    if world.distributed and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")


def leave(world: World) -> None:
    import torch.distributed as dist

    if world.distributed and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def wrap(network: nn.Module, world: World, device: torch.device) -> nn.Module:
    """DDP around the network when distributed; the network itself otherwise."""
    if not world.distributed:
        return network
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)
