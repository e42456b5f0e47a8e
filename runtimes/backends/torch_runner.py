"""PyTorch runner over treefuse safetensors weights: eager FP32 on the CPU by default, tuned options for CUDA."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import torch

from treefuse.checkpoint import LoadedWeights, load_weights
from treefuse.errors import TreefuseError
from treefuse.folding import fold
from treefuse.runtimes.backends.base import Runner

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class TorchRunner(Runner):
    """Runs the reference PyTorch model.

    Options: `device` ("cpu", "cuda", "cuda:1"), `dtype` ("fp32", "fp16", "bf16": weights and
    activations in that type, output back to float32), `channels_last`, `compile` (torch.compile)
    `cuda_graph` (capture one CUDA graph per input shape and replay it: fixed shapes only) and
    `fold` (run the exactly folded network, fewer operations: treefuse.folding).
    """

    kind = "torch"

    def __init__(self, path, device: str = "cpu", threads: int | None = None, dtype: str = "fp32",
                 channels_last: bool = False, compile: bool = False, cuda_graph: bool = False,
                 fold: bool = False) -> None:
        super().__init__(path)
        if dtype not in DTYPES:
            raise TreefuseError(f"torch: dtype must be one of {list(DTYPES)}, got {dtype!r}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise TreefuseError(f"torch: device {device!r} asked for but CUDA is not available here; use device=cpu")
        if cuda_graph and self.device.type != "cuda":
            raise TreefuseError("torch: cuda_graph needs device=cuda")
        self.threads, self.dtype, self.channels_last = threads, dtype, channels_last
        self.compile, self.cuda_graph, self.fold = compile, cuda_graph, fold
        self.loaded: LoadedWeights | None = None
        self.graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}

    def activate_impl(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        self.loaded = load_weights(self.path)
        network = fold(self.loaded.model) if self.fold else self.loaded.model
        model = network.to(self.device, DTYPES[self.dtype]).eval()
        if self.channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = torch.compile(model) if self.compile else model

    def _to_input(self, batch: np.ndarray) -> torch.Tensor:
        # a read-only batch (a memory-mapped calibration set) is copied: torch warns on non-writable arrays
        tensor = torch.from_numpy(np.require(batch, requirements="W")).to(self.device, DTYPES[self.dtype])
        return tensor.contiguous(memory_format=torch.channels_last) if self.channels_last else tensor

    @torch.inference_mode()
    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        if self.cuda_graph:
            output = self._replay(batch)
        else:
            output = self.model(self._to_input(batch))
        return output.float().cpu().numpy()

    def _replay(self, batch: np.ndarray) -> torch.Tensor:
        # One graph per shape: captured after a warm-up on a side stream, as torch.cuda.graphs requires.
        shape = tuple(batch.shape)
        if shape not in self.graphs:
            static_input = self._to_input(batch)
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(3):
                    self.model(static_input)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_output = self.model(static_input)
            self.graphs[shape] = (graph, static_input, static_output)
        graph, static_input, static_output = self.graphs[shape]
        static_input.copy_(self._to_input(batch))
        graph.replay()
        return static_output

    def deactivate_impl(self) -> None:
        self.model, self.graphs = None, {}

    def describe_impl(self) -> dict[str, Any]:
        mode = "compiled" if self.compile else "eager"
        facts: dict[str, Any] = {"backend": f"PyTorch {torch.__version__} {mode}", "precision": self.dtype,
                                 "device": str(self.device)}
        for option in ("channels_last", "compile", "cuda_graph", "fold"):
            if getattr(self, option):
                facts[option] = True
        if self.device.type == "cuda":
            facts["gpu"] = torch.cuda.get_device_name(self.device)
        return facts

    def read_metadata_impl(self) -> dict[str, str]:
        loaded = self.loaded if self.loaded is not None else load_weights(self.path)
        versions = (loaded.provenance or {}).get("tool_versions", {})
        return {"treefuse.precision": self.dtype, "treefuse.config": loaded.config.to_json(),
                "treefuse.source_sha256": loaded.sha256, "treefuse.tool_versions": json.dumps(versions)}
