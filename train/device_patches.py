"""Cut training patches on the training device: the images live there as uint8, once.

A batch is planned on the host exactly as `PatchSampler.batch` would cut it (the same
`PatchDraw`s, a few integers per patch), then one gather on the device cuts, flips and
converts all of it: no per-step copy of pixels to a GPU and no Python loop over patches.
The result equals `PatchSampler.batch` bit for bit, so this changes speed, not training.
"""
from __future__ import annotations

import numpy as np
import torch

from treefuse.errors import TreefuseError
from treefuse.train.patches import PatchSampler


class DevicePatchSampler:
    """The batches of `sampler`, cut on `device` from its images (real pairs and synthetic pool)."""

    def __init__(self, sampler: PatchSampler, device: torch.device) -> None:
        if sampler.renders_live:
            raise TreefuseError("speed.data_on_device needs pre-rendered synthetic rain: set data.synthetic_pool "
                                "(for example 2000) or data.synthetic_fraction=0")
        images = sampler.banks()
        self.sampler, self.device = sampler, device
        # Every image flattened into one buffer: a patch pixel is buffer[offset + (row * width + col) * 3 + c].
        sizes = [image.rain.shape[0] * image.rain.shape[1] * 3 for image in images]
        self.offsets = torch.tensor(np.cumsum([0, *sizes[:-1]]), dtype=torch.int64, device=device)
        self.widths = torch.tensor([image.rain.shape[1] for image in images], dtype=torch.int64, device=device)
        self.rain = torch.from_numpy(np.concatenate([image.rain.reshape(-1) for image in images])).to(device)
        self.clean = torch.from_numpy(np.concatenate([image.clean.reshape(-1) for image in images])).to(device)
        self.ramp = torch.arange(sampler.patch_size, dtype=torch.int64, device=device)
        self.channels = torch.arange(3, dtype=torch.int64, device=device)

    def batch(self, step: int, rank: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Rainy and clean Nx3xPxP float32 tensors on the device (channels-last memory), in [0, 1]."""
        draws = self.sampler.draws(step, rank)
        plan = torch.tensor([[d.index, d.top, d.left, d.hflip, d.vflip] for d in draws], dtype=torch.int64)
        index, top, left, hflip, vflip = plan.to(self.device, non_blocking=True).unbind(1)
        last = self.sampler.patch_size - 1
        rows = torch.where(vflip[:, None].bool(), last - self.ramp, self.ramp) + top[:, None]
        cols = torch.where(hflip[:, None].bool(), last - self.ramp, self.ramp) + left[:, None]
        pixels = rows[:, :, None] * self.widths[index][:, None, None] + cols[:, None, :]
        flat = self.offsets[index][:, None, None, None] + pixels[..., None] * 3 + self.channels
        return _to_float(self.rain[flat]), _to_float(self.clean[flat])


def _to_float(patches: torch.Tensor) -> torch.Tensor:
    """NxPxPx3 uint8 -> Nx3xPxP float32 in [0, 1]; the permute keeps channels-last memory, free."""
    return patches.permute(0, 3, 1, 2).float().div_(255.0)
