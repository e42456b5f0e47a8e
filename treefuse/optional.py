"""Optional packages imported where used: their absence is one line naming the extra, never a traceback."""
from __future__ import annotations

import importlib
from types import ModuleType

from treefuse.errors import TreefuseError
from treefuse.quiet import quiet_import


def import_optional(module: str, what: str, extra: str) -> ModuleType:
    """`module`, or a TreefuseError saying `what` is missing and which treefuse extra installs it."""
    with quiet_import():
        try:
            return importlib.import_module(module)
        except ImportError:
            raise TreefuseError(f"{what} is not installed; pip install 'treefuse[{extra}]'") from None
