"""Package discovery: every folder of a stage is a package of treefuse (pyproject's package-dir maps the stages).

The stages live in top-level folders (train/, export/, ...) but import as treefuse.<stage>; setuptools'
own discovery cannot map several roots, so this walks each root of package-dir. Data folders (weights,
configs, rain presets) are namespace packages, so their files ship and setuptools has nothing to warn about.
"""
from pathlib import Path

from setuptools import find_namespace_packages, setup

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    from setuptools._vendor import tomli as tomllib

ROOT = Path(__file__).parent
STAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]


def discovered_packages() -> list[str]:
    """treefuse.<stage>[.<sub>...] for every folder under each stage's root."""
    packages = set(STAGES)
    for package, folder in STAGES.items():
        found = find_namespace_packages(where=str(ROOT / folder), exclude=["*__pycache__*", "*.egg-info*"])
        packages.update(f"{package}.{name}" for name in found)
    return sorted(packages)


setup(packages=discovered_packages())
