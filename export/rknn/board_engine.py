"""A .rknn on a Rockchip board's NPU through rknn-toolkit-lite2: the engine a device bundle carries for `rknn:`.

`treefuse pack rknn:m.rknn` copies this file into the bundle's runner as `rknn_engine.py` (with
simulator.py and toolkit_qdq.py beside it), and the simulator's recipe `m.rknn.sim/` beside the
artifact; it imports nothing of treefuse or torch (numpy and, on the board, `rknnlite`). Where the
device tree names no Rockchip SoC, a Python that has rknn-toolkit2 (`.venv-rknn/bin/python run.py`)
judges the bundle on the toolkit's x86 simulator instead, rebuilt from the recipe as `treefuse parity`
does, and its result says so; any other Python refuses in one line before importing anything, so an
x86 machine or a wrong board says so (exit 2) instead of crashing in the runtime's C library.
"""
from __future__ import annotations

import json
import tempfile
from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

import numpy as np

try:
    from .manifest import BundleError, sha256_file  # inside a bundle's runner package
except ImportError:  # pragma: no cover  (read in the source tree)
    from treefuse.portable.manifest import BundleError, sha256_file

DEVICE_TREE = Path("/proc/device-tree/compatible")
NPU_DRIVER_FILES = (Path("/sys/kernel/debug/rknpu"), Path("/dev/rknpu"), Path("/proc/rknpu"))
PACKAGE = "rknn-toolkit-lite2"
NEEDS = ("rknn-toolkit-lite2 and the board's librknnrt.so, on a Rockchip board (or rknn-toolkit2 on x86: "
         "its simulator)")
TOOLKIT = "rknn-toolkit2"
SIMULATED = f"{TOOLKIT} simulator on x86, not the NPU"


def rockchip_soc(device_tree: Path = DEVICE_TREE) -> str | None:
    """The SoC the device tree names ('rk3588', 'rv1106', ...), or None when this is not a Rockchip board."""
    try:
        entries = device_tree.read_bytes().split(b"\0")
    except OSError:
        return None
    for entry in entries:
        vendor, _, soc = entry.decode("ascii", "replace").partition(",")
        if vendor == "rockchip" and soc.startswith(("rk", "rv")):
            return soc
    return None


def load(path: Path, threads: int | None) -> "BoardEngine | SimulatorEngine":
    """The artifact on this board's NPU, else on the toolkit's simulator where this Python has the toolkit,
    else one line saying what to do (BundleError: exit 2)."""
    soc = rockchip_soc()
    if soc is not None:
        return BoardEngine(path, soc)
    if find_spec("rknn") is not None:  # rknn-toolkit2's package, without importing it (and torch) yet
        return SimulatorEngine(path)
    raise BundleError("no Rockchip NPU found (no 'rockchip' SoC in /proc/device-tree/compatible); run this "
                      "bundle on the Rockchip board it was exported for, or judge it on rknn-toolkit2's x86 "
                      f"simulator with the toolkit's Python: .venv-rknn/bin/python {path.parent.parent}/run.py (`make "
                      "install-rknn` in treefuse's tree builds .venv-rknn)")


def recipe_dir(artifact: Path) -> Path:
    """Where the simulator's recipe of `artifact` lives: `m.rknn` -> `m.rknn.sim/`."""
    return artifact.with_name(artifact.name + ".sim")


def companion_files(artifact: Path) -> list[Path]:
    """What a bundle carries beside the .rknn: the simulator's recipe folder (pack carries the sidecar anyway)."""
    simulator_recipe(artifact)  # a changed recipe is refused when packed, not found out on the simulator
    return [recipe_dir(artifact)]


def runner_modules() -> list[Path]:
    """The modules the simulator path imports, packed beside this engine in the bundle's runner."""
    return [Path(__file__).with_name("simulator.py"), Path(__file__).with_name("toolkit_qdq.py")]


def simulator_recipe(artifact: Path) -> dict:
    """The recipe the sidecar `m.rknn.json` records for `artifact`, its files checked against their hashes."""
    sidecar = artifact.with_name(artifact.name + ".json")  # treefuse.sidecar's rule, which a bundle cannot import
    try:
        record = json.loads(sidecar.read_text())["provenance"]["rknn"]
        hashes = dict(record["recipe_sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        raise BundleError(f"{artifact.name} has no simulator recipe record ({sidecar.name}); export it with "
                          "`treefuse export rknn` and pack it again") from None
    folder = recipe_dir(artifact)
    for name, digest in hashes.items():
        if not (folder / name).is_file() or sha256_file(folder / name) != digest:
            raise BundleError(f"{folder.name}/{name} is missing or changed since {artifact.name} was exported; "
                              "the simulator rebuilds from it: export and pack again")
    return record


class BoardEngine:
    """One .rknn on the NPU: NCHW float32 in, float32 out (the runtime dequantizes an int8 output)."""

    def __init__(self, path: Path, soc: str) -> None:
        try:
            from rknnlite.api import RKNNLite
        except ImportError:
            raise BundleError(f"this bundle needs {PACKAGE} on the board ({soc}); pip install {PACKAGE} "
                              "(and the board's librknnrt.so from Rockchip's rknpu2 release)") from None
        self.soc, self.runtime = soc, f"{PACKAGE} on {soc}"
        self.lite = RKNNLite(verbose=False)
        if self.lite.load_rknn(str(path)) != 0 or self.lite.init_runtime() != 0:
            raise BundleError(f"{PACKAGE} cannot load {path.name} on this {soc}: was it exported with --platform "
                              f"{soc}? Is the NPU driver loaded?")

    def infer(self, batch: np.ndarray) -> np.ndarray:
        outputs = [self.lite.inference(inputs=[np.ascontiguousarray(image[None])], data_format="nchw")
                   for image in batch]
        if any(output is None for output in outputs):
            raise BundleError(f"{PACKAGE} returned no output on this {self.soc}; see the runtime's log above")
        return np.concatenate([np.asarray(output[0], dtype=np.float32) for output in outputs], axis=0)


class SimulatorEngine:
    """The .rknn's recipe rebuilt on rknn-toolkit2's x86 simulator, as `treefuse parity` runs it: not the NPU."""

    simulated = SIMULATED  # device_run labels the result and its latency with this

    def __init__(self, path: Path) -> None:
        record = simulator_recipe(path)
        try:
            from . import simulator
        except ImportError:
            raise BundleError("this bundle's runner lacks simulator.py; re-pack it with `treefuse pack`") from None
        self.simulator, self.platform = simulator, record["platform"]
        self.scratch = tempfile.TemporaryDirectory(prefix="treefuse-rknn-sim-")
        self.log = Path(self.scratch.name) / "toolkit.log"  # its progress bars and colour codes, off the terminal
        job = {"mode": record["mode"], "platform": record["platform"],
               "optimization_level": record.get("optimization_level", 3),
               "qdq_rewrites": record.get("qdq_rewrites", [])}  # what the desktop runner's worker is given
        self.toolkit = self._call(lambda: self._rebuilt(recipe_dir(path), job),
                                  f"rebuilding {path.name} for {self.platform}")
        self.runtime = f"{TOOLKIT} {_version(TOOLKIT)} simulator on x86, not the NPU ({self.platform})"

    def _rebuilt(self, recipe: Path, job: dict):
        toolkit = self.simulator.rebuilt(recipe, job)
        self.simulator.check(toolkit.init_runtime(), "init_runtime (simulator)")
        return toolkit

    def infer(self, batch: np.ndarray) -> np.ndarray:
        return self._call(lambda: self.simulator.simulate(self.toolkit, batch)[0], "running the simulator")

    def _call(self, step, what: str):
        """`step()` with the toolkit's output in the log; its refusals become one line."""
        try:
            with self.simulator.toolkit_output(self.log):
                return step()
        except ImportError as exc:
            raise BundleError(f"{TOOLKIT} is installed but fails to import ({exc}); reinstall it: make "
                              "install-rknn") from None
        except (self.simulator.JobError, ValueError) as exc:  # the toolkit's own errors are ValueErrors
            lines = [line for line in str(exc).splitlines() if line.strip()]
            cause = self.simulator.last_toolkit_error(self.log)
            raise BundleError(f"{TOOLKIT} simulator: {what} failed ({' '.join(lines[-1].split())[:200] if lines else ''}"
                              + (f"; it says: {cause}" if cause else "") + ")") from None


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "unknown"
