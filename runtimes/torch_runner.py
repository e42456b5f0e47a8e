"""PyTorch eager runner over treefuse safetensors weights."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from treefuse.checkpoint import LoadedWeights, load_weights
from treefuse.runtimes.base import Runner


class TorchRunner(Runner):
    """Runs the reference PyTorch model (FP32, CPU unless `device` says otherwise)."""

    kind = "torch"

    def __init__(self, path, device: str = "cpu", threads: int | None = None) -> None:
        super().__init__(path)
        self.device = torch.device(device)
        self.threads = threads
        self.loaded: LoadedWeights | None = None

    def activate_impl(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.loaded = load_weights(self.path)
        self.model = self.loaded.model.to(self.device).eval()

    @torch.inference_mode()
    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        output = self.model(torch.from_numpy(batch).to(self.device))
        return output.cpu().numpy()

    def deactivate_impl(self) -> None:
        self.model = None

    def describe_impl(self) -> dict[str, Any]:
        facts: dict[str, Any] = {"backend": f"PyTorch {torch.__version__} eager", "precision": "fp32",
                                 "device": str(self.device)}
        if self.loaded is not None:
            facts["config"] = self.loaded.config.to_dict()
        return facts
