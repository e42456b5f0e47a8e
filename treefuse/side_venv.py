"""Toolchains that cannot share treefuse's venv (LiteRT's converter, Rockchip's toolkit) run in a venv of their own.

`make install-litert` / `make install-rknn` create it beside the source tree; installed from a wheel, treefuse
looks in the working directory instead, and an environment variable names any other Python.
"""
from __future__ import annotations

import os
from pathlib import Path

SOURCE_TREE = Path(__file__).resolve().parents[1]  # the repository root, when treefuse runs from its source tree


def side_python(venv_name: str, env_var: str) -> Path | None:
    """The Python of `venv_name` ($env_var first, then beside the source tree, then in the working directory)."""
    if os.environ.get(env_var):
        return Path(os.environ[env_var])
    roots = [SOURCE_TREE] if (SOURCE_TREE / "pyproject.toml").is_file() else []
    for root in (*roots, Path.cwd()):
        python = root / venv_name / "bin" / "python"
        if python.is_file():
            return python
    return None
