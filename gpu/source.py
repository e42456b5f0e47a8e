"""Run a module of this source tree with a machine's own Python, nothing installed.

pyproject.toml maps each stage to a top-level folder (`treefuse.train` -> `train/`), so the
repository root on sys.path is not enough: a finder reads that map and loads every stage from its
folder. Pure-Python packages carried by `make gpu-pack` (`.gpu/site`) come after the machine's own.

    python3 gpu/source.py -m treefuse info
    python3 gpu/source.py -m pytest -q tests/train/test_train_run.py -k cuda
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CARRIED_SITE = ROOT / ".gpu" / "site"  # unpacked pure-Python wheels (gpu/pack.py)


def stage_folders(root: Path = ROOT) -> dict[str, Path]:
    """Package name -> folder, for every package pyproject.toml maps to a folder of another name."""
    import tomllib

    with open(root / "pyproject.toml", "rb") as file:
        package_dir = tomllib.load(file)["tool"]["setuptools"]["package-dir"]
    return {name: root / folder for name, folder in package_dir.items() if name.replace(".", "/") != folder}


class StageFinder(importlib.abc.MetaPathFinder):
    """Finds `treefuse.<stage>` in its top-level folder, as an installed treefuse would."""

    def __init__(self, folders: dict[str, Path]) -> None:
        self.folders = folders

    def find_spec(self, fullname: str, path: object = None,
                  target: object = None) -> importlib.machinery.ModuleSpec | None:
        folder = self.folders.get(fullname)
        if folder is None:
            return None
        return importlib.util.spec_from_file_location(fullname, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


def use_source_tree(root: Path = ROOT) -> None:
    """Make `import treefuse...` load this tree; carried packages only fill what the machine lacks."""
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
    sys.path.insert(0, str(root))
    if CARRIED_SITE.is_dir():
        sys.path.append(str(CARRIED_SITE))
    # First in line: an editable install's own finder must not answer instead.
    sys.meta_path.insert(0, StageFinder(stage_folders(root)))


def main(argv: list[str]) -> None:
    """`-m MODULE ARGS...` runs MODULE as __main__ with this tree importable."""
    if len(argv) < 2 or argv[0] != "-m":
        sys.exit("usage: python3 gpu/source.py -m MODULE [ARGS...]")
    use_source_tree()
    sys.argv = [argv[1], *argv[2:]]
    runpy.run_module(argv[1], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
