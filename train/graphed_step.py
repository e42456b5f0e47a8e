"""The whole training step (forward, loss, backward, Adam) captured as one CUDA graph.

At batch 10 of 100x100 this network's step is a few hundred tiny kernels: a GPU spends
longer launching them than running them. Replaying a captured graph launches them all
at once. Capture needs fixed addresses, so batches are copied into static buffers and
Adam runs with `capturable=True`. Captured kernels hold the learning rate as a constant,
so the step is recaptured whenever it changes (twice in the paper's schedule).

Written against torch.cuda's documented whole-network capture; it needs a CUDA device
and is skipped by the tests on machines without one.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch

WARMUP_STEPS = 3  # eager steps on a side stream before capture, as torch.cuda's graph docs require


class GraphedStep:
    """Runs `loss_fn(network(rainy), clean)` + backward + `optimizer.step()` by replaying a CUDA graph."""

    def __init__(self, network: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                 autocast: Callable[[], contextlib.AbstractContextManager]) -> None:
        self.network, self.optimizer, self.loss_fn, self.autocast = network, optimizer, loss_fn, autocast
        self.graph: torch.cuda.CUDAGraph | None = None
        self.captured_lr: float | None = None
        self.rainy = self.clean = self.loss = None

    def __call__(self, rainy: torch.Tensor, clean: torch.Tensor, lr: float) -> torch.Tensor:
        """One optimizer step on this batch at `lr`; returns the loss (a device tensor)."""
        if self.graph is None or lr != self.captured_lr or rainy.shape != self.rainy.shape:
            self._capture(rainy, clean, lr)
        self.rainy.copy_(rainy)
        self.clean.copy_(clean)
        self.graph.replay()
        return self.loss

    def _eager_step(self) -> torch.Tensor:
        with self.autocast():
            output = self.network(self.rainy)
        loss = self.loss_fn(output, self.clean)
        loss.backward()
        self.optimizer.step()
        return loss

    def _capture(self, rainy: torch.Tensor, clean: torch.Tensor, lr: float) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.rainy, self.clean = rainy.clone(), clean.clone()
        # Warm-up steps really update the weights and Adam's moments: keep a copy and put it back,
        # so that capturing changes nothing the run computes.
        saved = _snapshot(self.network, self.optimizer)
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(WARMUP_STEPS):
                self.optimizer.zero_grad(set_to_none=True)
                self._eager_step()
        torch.cuda.current_stream().wait_stream(side)
        _restore(saved, self.optimizer)
        self.optimizer.zero_grad(set_to_none=True)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.loss = self._eager_step()
        self.captured_lr = lr


def _snapshot(network: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(live tensor, copy) for every parameter and optimizer state tensor."""
    live = [p.data for p in network.parameters()]
    live += [value for slots in optimizer.state.values() for value in slots.values() if torch.is_tensor(value)]
    return [(tensor, tensor.clone()) for tensor in live]


def _restore(saved: list[tuple[torch.Tensor, torch.Tensor]], optimizer: torch.optim.Optimizer) -> None:
    """Put the snapshot back; state the warm-up created (first steps of a run) returns to Adam's zeros."""
    known = {id(tensor) for tensor, _ in saved}
    with torch.no_grad():
        for tensor, copy in saved:
            tensor.copy_(copy)
        for slots in optimizer.state.values():
            for value in slots.values():
                if torch.is_tensor(value) and id(value) not in known:
                    value.zero_()
