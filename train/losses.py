"""The paper's loss: 0.4 * MSE + 0.6 * (1 - SSIM), with the metric code `evaluate` uses."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from treefuse.metrics import ssim_torch


def derain_loss(output: torch.Tensor, target: torch.Tensor, mse_weight: float = 0.4,
                ssim_weight: float = 0.6) -> torch.Tensor:
    """Weighted MSE plus (1 - SSIM), computed in float32 even under autocast."""
    output, target = output.float(), target.float()
    return mse_weight * F.mse_loss(output, target) + ssim_weight * (1.0 - ssim_torch(output, target))
