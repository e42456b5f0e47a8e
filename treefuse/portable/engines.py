"""The artifact on its format's own runtime, without torch or treefuse: each format's bundle engine, loaded by kind.

A format's row names its engine (`bundle_engine`, a module in the format's folder); `treefuse pack`
copies it beside this file as KIND_engine.py. An engine module gives `load(path, threads)`, whose
result has `runtime` ('package version'), `infer(batch)`, where the runtime allows `layers(batch)`, and, when it
only simulates the device, `simulated` (what it is: its latency is then labelled and kept out of comparisons); a
module may also give `companion_files(artifact)`, the files or folders beside the artifact that the bundle must
carry, and `runner_modules()`, the modules it imports from beside itself, packed into the runner with it.
Each engine takes and returns NCHW float32 RGB in [0, 1]. What a runtime prints on the C
level (ONNX Runtime's `cpuinfo_initialize failed` under emulation, XNNPACK's delegate
banner) is captured, kept out of the terminal, and recorded with the result.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
import warnings
from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .manifest import BundleError


class MissingRuntime(BundleError):
    """The format's runtime is not installed on this device."""


@contextlib.contextmanager
def captured_stderr(lines: list[str]) -> Iterator[None]:
    """Run a block with file descriptor 2 sent to a temporary file; its lines are appended to `lines`."""
    with tempfile.TemporaryFile(mode="w+b") as sink, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = os.dup(2)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            sink.seek(0)
            lines += [line for line in sink.read().decode("utf-8", "replace").splitlines() if line.strip()]


def import_runtime(runtimes: tuple[tuple[str, str], ...]) -> tuple[Any, str]:
    """The first of (module, pip package) that imports, and its 'package version'; MissingRuntime naming what to install."""
    broken = []
    for module_name, package in runtimes:
        try:
            module = import_module(module_name)
        except ImportError:
            continue
        except Exception as exc:  # installed but cannot start here (a missing shared library, a wrong build)
            broken.append(f"{package} is installed but fails to import ({_first_line(exc)})")
            continue
        try:
            return module, f"{package} {version(package)}"
        except PackageNotFoundError:
            return module, package
    wanted = " or ".join(package for _, package in runtimes)
    if broken:
        raise MissingRuntime(f"{broken[0]}; reinstall it for this machine: pip install {wanted}")
    raise MissingRuntime(f"this bundle needs {wanted}, which is not installed; pip install {wanted}")


def engine_module(kind: str) -> Any:
    """The format's engine: KIND_engine.py beside this file in a bundle, else the module its row names."""
    if __package__ != "treefuse.portable":
        try:
            return import_module(f"{__package__}.{kind}_engine")
        except ModuleNotFoundError:
            raise BundleError(f"this bundle carries no engine for {kind!r} ({kind}_engine.py); re-pack it "
                              "with `treefuse pack`") from None
    from treefuse.formats import bundle_kinds, format_of  # run from treefuse's own tree (tests, `treefuse` itself)

    module = format_of(kind).bundle_engine
    if module is None:
        raise BundleError(f"{kind} artifacts have no bundle engine; bundles carry {', '.join(bundle_kinds())}")
    return import_module(module)


class Engine:
    """One loaded artifact; `notes` holds what its runtime printed while loading and running."""

    def __init__(self, kind: str, path: Path, threads: int | None) -> None:
        self.kind, self.path, self.threads, self.notes = kind, path, threads, []
        started = time.perf_counter()
        with captured_stderr(self.notes):
            try:
                self.loaded = engine_module(kind).load(path, threads)
            except BundleError:
                raise
            except Exception as exc:  # runtimes raise untyped errors for files they cannot load
                raise BundleError(f"the {kind} runtime cannot load {path.name} ({_first_line(exc)}); "
                                  "the bundle's artifact is not for this runtime version") from None
        self.runtime = self.loaded.runtime
        self.simulated: str | None = getattr(self.loaded, "simulated", None)  # e.g. RKNN's x86 simulator of its NPU
        self.runtime_s = time.perf_counter() - started  # import, load and every call: the runtime's own time

    def infer(self, batch: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        try:
            with captured_stderr(self.notes):
                return np.asarray(self.loaded.infer(batch), dtype=np.float32)
        finally:
            self.runtime_s += time.perf_counter() - started

    def layers(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output under the folded model's names (`run.py --layers`), where the runtime exposes them."""
        if not hasattr(self.loaded, "layers"):
            raise BundleError(f"--layers: {self.kind} bundles cannot expose their layers yet; use the ONNX bundle "
                              "of the same model")
        with captured_stderr(self.notes):
            return {name: np.asarray(value, dtype=np.float32) for name, value in self.loaded.layers(batch).items()}


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[0].split())[:200] if lines else type(exc).__name__
