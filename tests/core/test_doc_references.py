"""Every test file, source file and module the user docs name exists: references follow the code when it moves."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Source folders only: report/ and bundle/ are also the example output folders of `treefuse report` and `pack`.
SOURCE_PATH = re.compile(r"(?<![\w/.-])((?:tests|treefuse|train|export|runtimes|calib|data|benchmarks)/[\w/-]+\.py)\b")
MODULE = re.compile(r"\btreefuse(?:\.\w+)+")


def references(pattern: re.Pattern) -> list[tuple[str, str]]:
    """(doc:line, reference) for every match in the user docs."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in pattern.finditer(text):
            found.append((f"{doc.relative_to(ROOT)}:{text[:match.start()].count(chr(10)) + 1}", match.group(1)
                          if pattern.groups else match.group(0)))
    return found


def module_exists(dotted: str, package_dir: dict[str, str]) -> bool:
    """A `treefuse.stage.module` (optionally `.attribute`) resolves to a module file or package folder."""
    parts = dotted.split(".")
    for length in (len(parts), len(parts) - 1):
        name = ".".join(parts[:length])
        package = max((p for p in package_dir if name == p or name.startswith(p + ".")), key=len)
        folder = Path(package_dir[package], *name[len(package):].strip(".").split(".")) if name != package \
            else Path(package_dir[package])
        if (ROOT / folder).with_suffix(".py").is_file() or (ROOT / folder / "__init__.py").is_file():
            return True
    return False


def test_docs_name_source_and_test_files_that_exist():
    paths = references(SOURCE_PATH)
    assert any(ref.startswith("tests/") for _, ref in paths)  # the pattern still finds what it is meant to
    missing = [f"{where}: {ref}" for where, ref in paths if not (ROOT / ref).is_file()]
    assert not missing, "docs name files that are not there:\n" + "\n".join(missing)


def test_docs_name_modules_that_exist():
    package_dir = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    modules = references(MODULE)
    assert modules
    missing = [f"{where}: {ref}" for where, ref in modules if not module_exists(ref, package_dir)]
    assert not missing, "docs name modules that are not there:\n" + "\n".join(missing)
