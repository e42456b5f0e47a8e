"""What the PT2E INT8 flows (ExecuTorch, LiteRT) share: which graph nodes stay in float."""
from __future__ import annotations

from typing import Any, Callable

from treefuse.export.float_layers import FLOAT_MODULES


def outside_modules(names: tuple[str, ...] = FLOAT_MODULES) -> Callable[[Any], bool]:
    """A quantizer filter: True for an exported graph node that belongs to none of the `names` submodules.

    torch.export records each node's module path in meta["nn_module_stack"] as (path, type)
    values; the quantizers' own name filters parse the keys, whose format changed, and match nothing.
    """
    def keep(node: Any) -> bool:
        paths = [value[0] for value in node.meta.get("nn_module_stack", {}).values()]
        return not any(path == name or path.startswith(name + ".") for path in paths for name in names)

    return keep
