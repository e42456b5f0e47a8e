"""The artifact on its format's own runtime, without torch or treefuse: ONNX Runtime, ExecuTorch, LiteRT.

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

# kind -> (module to import, pip package that provides it) in the order tried.
RUNTIMES = {"onnx": (("onnxruntime", "onnxruntime"),),
            "executorch": (("executorch.runtime", "executorch"),),
            "litert": (("ai_edge_litert.interpreter", "ai-edge-litert"), ("tflite_runtime.interpreter", "tflite-runtime"))}


# kind -> the Engine method that returns every layer's output; the others say why not.
LAYERS = {"onnx": "_layers_onnx"}
LAYERS_REFUSED = {"executorch": "--layers: ExecuTorch runs this program as one XNNPACK delegate call, which keeps its "
                                "layers to itself (ExecuTorch's debugger sees one operator); use --layers on the ONNX "
                                "bundle of the same model"}


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


def import_runtime(kind: str) -> tuple[Any, str]:
    """The runtime module for `kind` and its package's 'name version'; MissingRuntime naming what to install."""
    broken = []
    for module_name, package in RUNTIMES[kind]:
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
    wanted = " or ".join(package for _, package in RUNTIMES[kind])
    if broken:
        raise MissingRuntime(f"{broken[0]}; reinstall it for this machine: pip install {wanted}")
    raise MissingRuntime(f"this bundle needs the {kind} runtime, which is not installed; pip install {wanted}")


def own_engine(kind: str) -> Any:
    """A format's own engine module, packed beside this one as KIND_engine.py (its row's `bundle_engine`), or None."""
    try:
        return import_module(f"{__package__}.{kind}_engine")
    except ModuleNotFoundError:
        return None


class Engine:
    """One loaded artifact; `notes` holds what its runtime printed while loading and running."""

    def __init__(self, kind: str, path: Path, threads: int | None) -> None:
        self.kind, self.path, self.threads, self.notes = kind, path, threads, []
        started = time.perf_counter()
        own = own_engine(kind) if kind not in RUNTIMES else None
        if own is not None:  # it checks its device and runtime itself, each refusal one line (BundleError)
            with captured_stderr(self.notes):
                self.loaded = own.load(path, threads)
            self.runtime, self.runtime_s = self.loaded.runtime, time.perf_counter() - started
            return
        with captured_stderr(self.notes):
            self.module, self.runtime = import_runtime(kind)
            try:
                getattr(self, f"_load_{kind}")()
            except MissingRuntime:
                raise
            except Exception as exc:  # runtimes raise untyped errors for files they cannot load
                raise BundleError(f"{self.runtime} cannot load {path.name} ({_first_line(exc)}); "
                                  "the bundle's artifact is not for this runtime version") from None
        self.runtime_s = time.perf_counter() - started  # import, load and every call: the runtime's own time

    def infer(self, batch: np.ndarray) -> np.ndarray:
        started = time.perf_counter()
        infer = self.loaded.infer if hasattr(self, "loaded") else getattr(self, f"_infer_{self.kind}")
        try:
            with captured_stderr(self.notes):
                return np.asarray(infer(batch), dtype=np.float32)
        finally:
            self.runtime_s += time.perf_counter() - started

    def layers(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Every layer's output under the folded model's names (`run.py --layers`), where the runtime exposes them."""
        if self.kind not in LAYERS:
            raise BundleError(LAYERS_REFUSED.get(self.kind, f"--layers: {self.kind} bundles cannot expose their layers "
                                                            "yet; use the ONNX bundle of the same model"))
        with captured_stderr(self.notes):
            return {name: np.asarray(value, dtype=np.float32) for name, value in getattr(self, LAYERS[self.kind])(batch).items()}

    # -- ONNX Runtime --------------------------------------------------------------
    def _onnx_options(self) -> Any:
        ort = self.module
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as treefuse's own runner
        if self.threads:
            options.intra_op_num_threads, options.inter_op_num_threads = self.threads, 1
        return options

    def _load_onnx(self) -> None:
        self.module.set_default_logger_severity(3)
        self.session = self.module.InferenceSession(str(self.path), self._onnx_options(), providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.input_name, self.fp16_input = first.name, first.type == "tensor(float16)"

    def _infer_onnx(self, batch: np.ndarray) -> np.ndarray:
        feed = batch.astype(np.float16) if self.fp16_input else batch
        return self.session.run(None, {self.input_name: feed})[0]

    def _layers_onnx(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        if not hasattr(self, "layer_session"):  # a second session, every layer a graph output
            from .layers import exposed_onnx

            try:
                model_bytes, self.layer_tensors = exposed_onnx(self.path)
            except ImportError:
                raise BundleError("--layers needs the onnx package to expose the model's layers: pip install onnx") from None
            self.layer_session = self.module.InferenceSession(model_bytes, self._onnx_options(),
                                                              providers=["CPUExecutionProvider"])
        feed = batch.astype(np.float16) if self.fp16_input else batch
        values = self.layer_session.run(list(self.layer_tensors.values()), {self.input_name: feed})
        return dict(zip(self.layer_tensors, values))

    # -- ExecuTorch (its pip runtime links libtorch, so tensors cross as torch tensors) ---
    def _load_executorch(self) -> None:
        if self.threads:
            import_module("executorch.extension.pybindings.portable_lib")._unsafe_reset_threadpool(self.threads)
        self.method = self.module.Runtime.get().load_program(str(self.path)).load_method("forward")
        self.torch = import_module("torch")

    def _infer_executorch(self, batch: np.ndarray) -> np.ndarray:
        outputs = [self.method.execute([self.torch.from_numpy(np.ascontiguousarray(image[None]))])[0].numpy()
                   for image in batch]
        return np.concatenate(outputs, axis=0)

    # -- LiteRT (XNNPACK by default) ---------------------------------------------------
    def _load_litert(self) -> None:
        self.interpreter = self.module.Interpreter(model_path=str(self.path), num_threads=self.threads or None)
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.shape: tuple[int, ...] | None = None

    def _infer_litert(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape != self.shape:  # every op of this network is size-agnostic: resize to each input
            self.interpreter.resize_tensor_input(self.input_index, list(batch.shape))
            self.interpreter.allocate_tensors()
            self.shape = batch.shape
        self.interpreter.set_tensor(self.input_index, np.ascontiguousarray(batch))
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.output_index).copy()


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return " ".join(lines[0].split())[:200] if lines else type(exc).__name__
