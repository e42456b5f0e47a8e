"""Weights -> ONNX: fold exactly, export with dynamic shapes, simplify, check, embed provenance."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from treefuse.artifact import artifact_metadata, onnx_model_metadata
from treefuse.checkpoint import load_weights
from treefuse.errors import TreefuseError
from treefuse.files import atomic_path
from treefuse.folding import fold
from treefuse.provenance import provenance

INPUT_NAME, OUTPUT_NAME = "input", "output"
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}


def export_onnx(weights_path: str | Path, out_path: str | Path, *, opset: int = 17, folded: bool = True,
                simplify: bool = True) -> Path:
    """Export treefuse weights to a checked FP32 ONNX model at `out_path`, atomically."""
    import onnx

    loaded = load_weights(weights_path)
    network = fold(loaded.model) if folded else loaded.model.eval()
    with atomic_path(out_path) as staged:
        _trace_to_onnx(network, staged, opset)
        model = onnx.load(str(staged))
        if simplify:
            model = _simplify(model)
        pin_spatial_dims(model)
        record = provenance(config=loaded.config.to_dict(), source_checkpoint=str(loaded.path),
                            source_sha256=loaded.sha256, folded=folded, opset=opset, precision="fp32",
                            simplified=simplify)
        set_metadata(model, {"treefuse_config": loaded.config.to_json(), "source_sha256": loaded.sha256,
                             "treefuse_provenance": json.dumps(record, sort_keys=True),
                             **artifact_metadata(format="onnx", precision="fp32", config=loaded.config.to_dict(),
                                                 source_sha256=loaded.sha256)})
        onnx.checker.check_model(model, full_check=True)
        onnx.save(model, str(staged))
    return Path(out_path)


def set_metadata(model: Any, entries: dict[str, str]) -> None:
    """Set (replace) string metadata_props on an ONNX ModelProto."""
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value


def read_metadata(model: Any) -> dict[str, str]:
    """metadata_props of an ONNX ModelProto as a dict (a damaged, non-UTF-8 entry is bad input)."""
    return onnx_model_metadata(model)


def pin_spatial_dims(model: Any) -> None:
    """Name every 4-D intermediate's height and width after the input's.

    Every convolution in this network keeps the spatial size (stride 1, same padding), but
    shape inference invents a new symbol per node, so ONNX Runtime cannot prove that the two
    inputs of an Add match and leaves them unfused (with reshapes) in its NCHWc layout.
    Telling it they match lets it fuse Add and ReLU into the convolutions: exact, ~8% faster.
    """
    for node in model.graph.node:
        if node.op_type == "Conv" and not _keeps_spatial_size(node):
            raise TreefuseError(f"ONNX node {node.name} changes the spatial size; cannot pin dims")
    for value in model.graph.value_info:
        dims = value.type.tensor_type.shape.dim
        if len(dims) == 4:
            dims[2].dim_param, dims[3].dim_param = DYNAMIC_AXES[2], DYNAMIC_AXES[3]


def _keeps_spatial_size(conv: Any) -> bool:
    import onnx

    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute}
    kernel, dilations = attrs.get("kernel_shape", [1, 1]), attrs.get("dilations", [1, 1])
    same = [d * (k - 1) // 2 for k, d in zip(kernel, dilations)]
    return list(attrs.get("strides", [1, 1])) == [1, 1] and list(attrs.get("pads", [0] * 4)) == same + same


def _trace_to_onnx(network: torch.nn.Module, path: Path, opset: int) -> None:
    example = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.onnx.export(network, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: DYNAMIC_AXES, OUTPUT_NAME: DYNAMIC_AXES}, opset_version=opset,
                          dynamo=False)


def _simplify(model: Any) -> Any:
    from onnxsim import simplify

    simplified, ok = simplify(model)
    if not ok:
        raise TreefuseError("onnxsim could not validate the simplified model; re-run with simplification off")
    return simplified
