"""The layers program: an ExecuTorch program of the folded network that returns every layer's tensor.

XNNPACK runs a normal program as one delegate call, so `m.pte` keeps its layers to itself. `m.layers.pte`
is the same network, quantized by the same PT2E recipe on the same calibration set and lowered to XNNPACK
the same way, whose `forward` returns each layer under the folded model's names (`head`,
`blocks.2.pairs.0.conv_a`, ..., `output`, as `treefuse diff` names them). Its sidecar
(`m.layers.pte.json`) records those names, the bytes of `m.pte` it belongs to and how far its `output`
is from `m.pte`'s on this machine (exposing a tensor may change what XNNPACK fuses).
A bundle's `run.py --layers` runs it on the device.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch

from treefuse.checkpoint import load_weights
from treefuse.errors import TreefuseError
from treefuse.export.executorch.bundle_engine import layers_program_path
from treefuse.export.executorch.exporter import (DEFAULT_MAX_HW, DEFAULT_MIN_HW, _dynamic_shapes, _example_hw,
                                                 _lower, _quantize_int8, _quiet, import_executorch)
from treefuse.files import atomic_path, sha256_file
from treefuse.folding import FoldedTreeFusionNet
from treefuse.model import TreeFusionNet
from treefuse.runtimes.backends.executorch_runner import import_runtime
from treefuse.runtimes.inspect.names import OUTPUT
from treefuse.runtimes.inspect.torch_layers import recorded_layers
from treefuse.sidecar import read_sidecar, write_sidecar

CHECK_HW = (32, 32)  # the output check on this machine: small, so it costs a second


class LayerOutputs(FoldedTreeFusionNet):
    """The folded network whose forward returns (every layer's output..., the model's output).

    A subclass, not a wrapper: module paths stay those of the normal export, so the quantizer's
    float-module filter and the layer names match it exactly."""

    def __init__(self, model: TreeFusionNet) -> None:
        super().__init__(copy.deepcopy(model))
        self.eval()
        with torch.no_grad():
            self.names = list(self._record(torch.zeros(1, model.config.in_channels, 16, 16)))

    def _record(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        with recorded_layers(self) as outputs:
            output = super().forward(x)
        return {**outputs, OUTPUT: output}

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(self._record(x).values())


def write_layers_program(weights_path: str | Path, program_path: str | Path, precision: str = "fp32",
                         calibration: Any = None, min_hw: tuple[int, int] = DEFAULT_MIN_HW,
                         max_hw: tuple[int, int] = DEFAULT_MAX_HW,
                         program_record: tuple[dict[str, str], dict[str, Any]] | None = None) -> Path:
    """Write `m.layers.pte` and its sidecar beside the program `m.pte` exported with these same arguments.

    Returns the layers program's path. The program must already be written: the sidecar is bound to its bytes.
    `program_record` is the program's (metadata, provenance) when its sidecar is not written yet."""
    program_path = Path(program_path)
    if not program_path.is_file():
        raise TreefuseError(f"{program_path} does not exist; export the program first, then its layers program")
    if precision not in ("fp32", "int8"):
        raise TreefuseError(f"a layers program takes precision fp32 or int8, not {precision!r}")
    import_executorch()
    loaded = load_weights(weights_path)
    network = LayerOutputs(loaded.model)
    example = torch.rand(1, loaded.config.in_channels, *_example_hw(min_hw, max_hw),
                         generator=torch.Generator().manual_seed(0))
    dynamic = _dynamic_shapes(min_hw, max_hw)
    with _quiet():
        program = torch.export.export(network, (example,), dynamic_shapes=dynamic)
        if precision == "int8":
            from treefuse.export.calibration_images import calibration_from

            program = _quantize_int8(program, calibration_from(calibration).images, example, dynamic)
        buffer = _lower(program)
    out = layers_program_path(program_path)
    with atomic_path(out) as staged:
        staged.write_bytes(buffer)
        output_change = output_difference(program_path, staged, len(network.names), loaded.config.in_channels,
                                          min_hw, max_hw)
    if program_record is None:
        found = read_sidecar(program_path) or {"metadata": {}, "provenance": {}}
        program_record = found["metadata"], found["provenance"]
    metadata, provenance = program_record
    record = {**provenance, "layers": network.names, "program": program_path.name,
              "program_sha256": sha256_file(program_path), "output_vs_program_max_abs_diff": output_change}
    write_sidecar(out, metadata, record)
    return out


def output_difference(program: Path, layers_program: Path, outputs: int, channels: int,
                      min_hw: tuple[int, int], max_hw: tuple[int, int]) -> float:
    """Largest |difference| between the programs' outputs on one random image, on this machine's runtime."""
    hw = tuple(min(max(low, side), high) for low, side, high in zip(min_hw, CHECK_HW, max_hw))
    image = torch.from_numpy(np.random.default_rng(0).random((1, channels, *hw), dtype=np.float32))
    runtime = import_runtime().Runtime.get()
    plain = runtime.load_program(str(program)).load_method("forward").execute([image])[0]
    exposed = runtime.load_program(str(layers_program)).load_method("forward").execute([image])
    if len(exposed) != outputs:  # the lowering dropped or merged outputs: the names would be misassigned
        raise RuntimeError(f"the layers program returns {len(exposed)} tensors, not the {outputs} layers it was built with")
    return float(torch.max(torch.abs(plain - exposed[-1])))
