"""The folded model's layer names in every runtime: ONNX graphs (shared with device bundles) and profiled nodes."""
from __future__ import annotations

from treefuse.portable.layers import OUTPUT, exposed_onnx, layer_tensors, scope_of

__all__ = ["OUTPUT", "exposed_onnx", "layer_tensors", "layer_of_node", "scope_of"]


def layer_of_node(node_name: str) -> str:
    """The layer a profiled node belongs to, or 'model' for a node outside any module (input padding, the add)."""
    scope = scope_of(node_name)
    return scope or "model"
