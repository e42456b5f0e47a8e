"""Every layer of a .rknn on rknn-toolkit2's simulator: the model it was built from, each layer's tensor an output.

The simulator rebuilds a .rknn from its recipe anyway (it cannot run a loaded one), so the recipe's
ONNX model (already pinned to the compiled size) gets every layer's tensor as an extra output, named
as ONNX Runtime's capture names them, and a second worker builds that. The NPU compiler may fuse
less around a tensor read outside: `diff` reports how far the output moved. A recipe of the
toolkit's own INT8 (its quantized model, no ONNX) exposes its output alone.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.runtimes.backends.base import Runner
from treefuse.runtimes.inspect.names import OUTPUT, layer_tensors


def exposed_recipe_model(model_path: Path) -> tuple[Any, dict[str, str]]:
    """The recipe's ONNX model with every layer's tensor copied to a graph output of known shape, and layer -> output.

    Each layer leaves through an Identity of its own: the toolkit fails to build a QDQ model whose
    DequantizeLinear output is itself a graph output (KeyError on its `_dup` copy)."""
    import onnx

    model = onnx.load(str(model_path))
    layers = layer_tensors(model.graph)
    shapes = {value.name: value.type for value in (*onnx.shape_inference.infer_shapes(model).graph.value_info,
                                                  *model.graph.output)}
    outputs = {}
    for layer, tensor in layers.items():
        if layer == OUTPUT:
            outputs[layer] = tensor
            continue
        exposed = f"{tensor}_exposed"
        model.graph.node.append(onnx.helper.make_node("Identity", [tensor], [exposed], name=exposed))
        output = onnx.ValueInfoProto(name=exposed)
        output.type.CopyFrom(shapes[tensor])
        model.graph.output.append(output)
        outputs[layer] = exposed
    return model, outputs


def open_layers(runner: Runner) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """A function batch -> {layer: output} for an active RKNN runner, at the size the .rknn was compiled for."""
    import onnx

    recipe = runner.recipe
    size = tuple(recipe["size"])
    if recipe["mode"] == "int8":
        from treefuse.runtimes.inspect.output_only import open_layers as output_only

        return output_only(runner)
    model, layers = exposed_recipe_model(Path(recipe["recipe_dir"]) / "model.onnx")
    position = {output.name: index for index, output in enumerate(model.graph.output)}
    workers: list[Any] = []  # built at the first batch of the right size: a wrong --crop costs no build

    def capture(batch: np.ndarray) -> dict[str, np.ndarray]:
        if batch.shape[2:] != size:
            raise TreefuseError(f"rknn: {runner.path} is compiled for {size[0]}x{size[1]}, and its layers exist at "
                                f"that size only; diff it with --crop {size[0]}x{size[1]} on images at least as large")
        if not workers:
            with tempfile.TemporaryDirectory(prefix="treefuse-rknn-layers-") as folder:
                onnx.save(model, str(Path(folder) / "model.onnx"))
                workers.append(runner.simulate_variant(Path(folder), "building the model with its layers exposed"))
        outputs = workers[0].run(batch)
        return {layer: np.asarray(outputs[position[tensor]], dtype=np.float32) for layer, tensor in layers.items()}

    return capture
