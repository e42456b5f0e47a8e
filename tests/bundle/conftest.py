"""Bundle fixtures: a torch-free venv (numpy + onnxruntime only, built once, cached outside the repo) and bundles."""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMITTED_ONNX = REPO / "reports" / "artifacts" / "default.onnx"
VENV = Path(os.environ.get("TREEFUSE_BUNDLE_VENV", Path.home() / ".cache" / "treefuse" / "bundle-venv"))


def _python_of(venv: Path) -> Path:
    return venv / "bin" / "python"


def _build_venv(venv: Path) -> str | None:
    """Create the venv once (a lock keeps two test runs from racing); None when ready, else why not."""
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / "bundle-venv.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv / ".ready").is_file():
            return None
        shutil.rmtree(venv, ignore_errors=True)
        base = getattr(sys, "_base_executable", sys.executable)  # the interpreter, not the project venv's site-packages
        steps = ([base, "-m", "venv", str(venv)],
                 [str(_python_of(venv)), "-m", "pip", "install", "-q", "numpy", "onnxruntime"])
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                return f"`{' '.join(step[:4])} ...` failed: {done.stderr.strip().splitlines()[-1:]}"
        (venv / ".ready").touch()
    return None


@pytest.fixture(scope="session")
def torch_free_python() -> Path:
    """A Python with numpy and onnxruntime and no torch (skipped, with the reason, when it cannot be built)."""
    reason = _build_venv(VENV)
    if reason:
        pytest.skip(f"cannot build the torch-free venv at {VENV}: {reason}")
    python = _python_of(VENV)
    has_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True).returncode == 0
    assert not has_torch, f"{VENV} has torch: the bundle test would prove nothing; delete the folder"
    return python


@pytest.fixture(scope="session")
def committed_onnx() -> Path:
    """The committed FP32 ONNX export of the shipped weights."""
    return COMMITTED_ONNX


@pytest.fixture(scope="session")
def onnx_bundle(paired_dir, tmp_path_factory) -> Path:
    """A bundle of the committed FP32 ONNX model on two 32x32 crops of tiny self-made pairs."""
    from treefuse.bundle.pack import PackRequest, pack

    out = tmp_path_factory.mktemp("bundles") / "onnx-fp32"
    pack(PackRequest(f"onnx:{COMMITTED_ONNX}", paired_dir, out, sizes=((32, 32),), count=2))
    return out


@pytest.fixture(scope="session")
def run_bundle():
    """`python BUNDLE/run.py ARGS` from the bundle's parent folder (the project's Python unless given another)."""
    def run(bundle: Path, *args: str, python: Path | str = sys.executable) -> subprocess.CompletedProcess:
        return subprocess.run([str(python), str(bundle / "run.py"), *args], capture_output=True, text=True,
                              cwd=bundle.parent, timeout=300)
    return run
