"""A wheel built from the repo, installed (not editable) in a fresh virtual environment, runs the CLI,
holds every module of the source tree under its package name, and packs a bundle that runs where
only numpy and ONNX Runtime are installed.

`make` installs in editable mode, which finds modules wherever they are; an installed wheel finds
only what its packages hold, and no source tree beside them."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")

ROOT = Path(__file__).resolve().parents[2]


def setuptools_config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


# The stage folders, and any folder a later stage maps in pyproject.
SOURCE_FOLDERS = sorted({"treefuse", "train", "export", "runtimes", "calib", "report", "data", "bundle",
                         *setuptools_config()["package-dir"].values()})


def wheel_path_of(source: Path, package_dir: dict[str, str]) -> str:
    """Where a file under the repo lands in the wheel: its top folder replaced by the package mapped to it."""
    top, *rest = source.relative_to(ROOT).parts
    package = next((name for name, folder in package_dir.items() if folder == top), None)
    assert package, f"{top}/ is mapped to no package in pyproject's package-dir"
    return "/".join([*package.split("."), *rest])


def source_files(pattern: str) -> list[Path]:
    return sorted(path for folder in SOURCE_FOLDERS for path in (ROOT / folder).rglob(pattern)
                  if "__pycache__" not in path.parts and not any(part.startswith(".") for part in path.parts))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the tree (the build writes build/ and egg-info beside its sources)."""
    work = tmp_path_factory.mktemp("wheel")
    tree = work / "src"
    tree.mkdir()
    for name in ("pyproject.toml", "setup.py"):
        shutil.copy(ROOT / name, tree)
    for folder in SOURCE_FOLDERS:
        shutil.copytree(ROOT / folder, tree / folder, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-v",
                            str(tree), "-w", str(work / "dist")], check=True, capture_output=True, text=True,
                           timeout=300)
    # setuptools' 40-line banner for a data folder that is not a package: discovery leaves none to warn about
    assert "would be ignored" not in build.stdout + build.stderr
    (built,) = (work / "dist").glob("treefuse-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A fresh environment holding only the wheel; its dependencies are read from this environment's site-packages."""
    env = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True, timeout=120)
    site = Path(subprocess.run([env / "bin" / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # A path line only: the editable install's own .pth in that folder is not run, so it cannot shadow the wheel.
    (site / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"), "install", "--no-deps",
                    "--quiet", str(wheel)], check=True, capture_output=True, text=True, timeout=300)
    return env


def run_in(env: Path, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    clean = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(env / "bin" / argv[0]), *argv[1:]], capture_output=True, text=True, cwd=cwd,
                          env=clean, timeout=300)


def test_the_wheel_holds_every_module_of_the_tree(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    package_dir = setuptools_config()["package-dir"]
    missing = [str(path.relative_to(ROOT)) for path in source_files("*.py")
               if wheel_path_of(path, package_dir) not in names]
    assert not missing, f"not in the wheel (setup.py's package discovery missed them): {missing}"
    assert "treefuse/weights/default.safetensors" in names  # package data: the shipped weights


def test_the_installed_wheel_runs_the_cli(venv, tmp_path):
    where = run_in(venv, "python", "-c", "import treefuse.cli, treefuse.export.onnx; print(treefuse.cli.__file__)",
                   cwd=tmp_path)
    assert where.returncode == 0, where.stderr
    assert Path(where.stdout.strip()).is_relative_to(venv), f"imported from {where.stdout}, not the wheel"
    info = run_in(venv, "treefuse", "info", "--json", cwd=tmp_path)
    assert info.returncode == 0 and info.stderr == "", info.stderr
    assert json.loads(info.stdout)
    export_help = run_in(venv, "treefuse", "export", "onnx", "--help", cwd=tmp_path)
    assert export_help.returncode == 0 and "--precision" in export_help.stdout, export_help.stderr


@pytest.fixture(scope="module")
def numpy_and_onnxruntime_only(tmp_path_factory) -> Path:
    """A Python that can import numpy and onnxruntime and nothing else of this environment (no torch, no treefuse)."""
    root = tmp_path_factory.mktemp("device")
    site, purelib = root / "site", Path(sysconfig.get_path("purelib"))
    site.mkdir()
    for entry in purelib.iterdir():
        if entry.name.split("-")[0].split(".")[0] in ("numpy", "onnxruntime"):
            (site / entry.name).symlink_to(entry)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root / "env")], check=True, timeout=120)
    env_site = subprocess.run([root / "env" / "bin" / "python", "-c",
                               "import sysconfig; print(sysconfig.get_path('purelib'))"],
                              check=True, capture_output=True, text=True).stdout.strip()
    (Path(env_site) / "device.pth").write_text(f"{site}\n")
    return root / "env"


def test_the_installed_wheel_packs_a_bundle_that_runs_without_treefuse(venv, numpy_and_onnxruntime_only, tmp_path):
    from PIL import Image

    images = tmp_path / "pairs"
    for folder in ("rain", "clean"):
        (images / folder).mkdir(parents=True)
        Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(
            images / folder / "001.png")
    packed = run_in(venv, "treefuse", "pack", f"onnx:{ROOT / 'reports/artifacts/default.onnx'}", "--images",
                    str(images), "--sizes", "32x32", "--out", str(tmp_path / "bundle"), cwd=tmp_path)
    assert packed.returncode == 0, packed.stderr
    assert (tmp_path / "bundle" / "bundle_runner" / "device_run.py").is_file()
    device = numpy_and_onnxruntime_only / "bin" / "python"
    assert run_in(numpy_and_onnxruntime_only, "python", "-c", "import torch", cwd=tmp_path).returncode != 0
    ran = subprocess.run([str(device), str(tmp_path / "bundle" / "run.py"), "--iters", "1", "--json",
                          str(tmp_path / "result.json")], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert json.loads((tmp_path / "result.json").read_text())["passed"] is True
