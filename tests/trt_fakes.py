"""Recording stand-ins for tensorrt and Polygraphy's TensorRT backend (neither can run here)."""
from __future__ import annotations

import types
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper


def tiny_onnx(path: Path, qdq: bool = False, metadata: dict[str, str] | None = None,
              zero_point_type: int = TensorProto.INT8) -> Path:
    """A 1x1 conv 3->3 with a dynamic NCHW input named 'input', optionally behind a QDQ pair (int8, zero point 0)."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [3, 3, 1, 1], np.eye(3, dtype=np.float32).ravel().tolist())
    nodes, conv_input, inits = [], "input", [weight]
    if qdq:
        inits += [helper.make_tensor("s", TensorProto.FLOAT, [], [1 / 255]),
                  helper.make_tensor("z", zero_point_type, [], [0])]
        nodes += [helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"]),
                  helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"])]
        conv_input = "dq"
    nodes.append(helper.make_node("Conv", [conv_input, "w"], ["output"]))
    dims = ["batch", 3, "height", "width"]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, str(path))
    return path


def fake_tensorrt_module(version: str = "10.8.0") -> types.ModuleType:
    """A `tensorrt` module with just the calibrator base classes Polygraphy subclasses."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    for name in ("IInt8EntropyCalibrator2", "IInt8LegacyCalibrator", "IInt8Calibrator", "IInt8EntropyCalibrator",
                 "IInt8MinMaxCalibrator"):
        setattr(trt, name, type(name, (), {"__init__": lambda self: None}))
    return trt


class FakeBuildError(Exception):
    """Stands in for polygraphy.exception.PolygraphyException."""


# What Polygraphy's CreateConfig passes on to its base (_CreateConfigCommon) through **kwargs.
CONFIG_COMMON_OPTIONS = (
    "profiles", "precision_constraints", "load_timing_cache", "algorithm_selector", "sparse_weights",
    "tactic_sources", "restricted", "profiling_verbosity", "memory_pool_limits", "refittable", "strip_plan",
    "preview_features", "engine_capability", "direct_io", "builder_optimization_level",
    "hardware_compatibility_level", "max_aux_streams", "version_compatible", "exclude_lean_runtime",
    "quantization_flags", "error_on_timing_cache_miss", "disable_compilation_cache", "progress_monitor",
    "weight_streaming", "runtime_platform", "tiling_optimization_level")


class FakeProfile(dict):
    """polygraphy.backend.trt.Profile: input name -> (min, opt, max)."""

    def __init__(self, dct=None):
        super().__init__(dct or {})

    def add(self, name, min, opt, max):
        self[name] = (tuple(min), tuple(opt), tuple(max))
        return self

    @property
    def shapes(self) -> dict:
        return dict(self)


class FakePolygraphy:
    """Records the loader calls treefuse makes; builds b'ENGINE', or returns None / raises when told to fail.

    Every method takes exactly the parameters of its namesake in polygraphy.backend.trt (tests/export/
    test_trt_fakes.py compares them), so a call the real API would refuse fails here too."""

    Profile = FakeProfile

    def __init__(self, engine_bytes: bytes | None = b"ENGINE", raises: bool = False) -> None:
        self.calls: dict[str, list] = {}
        self.engine_bytes = engine_bytes
        self.raises = raises

    def _record(self, name, *args, **kwargs):
        self.calls.setdefault(name, []).append((args, kwargs))

    def NetworkFromOnnxPath(self, path, flags=None, plugin_instancenorm=None, strongly_typed=None,
                            mark_unfused_tensors_as_debug_tensors=None, enable_uint8_asymmetric_quantization_dla=None,
                            config=None):
        self._record("NetworkFromOnnxPath", path, flags=flags, plugin_instancenorm=plugin_instancenorm,
                     strongly_typed=strongly_typed, config=config)
        return ("network", path)

    def Calibrator(self, data_loader, cache=None, BaseClass=None, batch_size=None, quantile=None,
                   regression_cutoff=None, algo=None):
        options = dict(cache=cache, BaseClass=BaseClass, batch_size=batch_size, quantile=quantile,
                       regression_cutoff=regression_cutoff, algo=algo)
        self._record("Calibrator", data_loader, **options)
        return SimpleNamespace(data_loader=data_loader, **options)

    def CreateConfig(self, tf32=None, fp16=None, int8=None, fp8=None, bf16=None, calibrator=None, use_dla=None,
                     allow_gpu_fallback=None, **kwargs):
        unknown = sorted(set(kwargs) - set(CONFIG_COMMON_OPTIONS))
        if unknown:
            raise TypeError(f"CreateConfig got unexpected keyword argument(s) {unknown}")
        options = dict(tf32=tf32, fp16=fp16, int8=int8, fp8=fp8, bf16=bf16, calibrator=calibrator, use_dla=use_dla,
                       allow_gpu_fallback=allow_gpu_fallback, **kwargs)
        self._record("CreateConfig", **options)
        return ("config", options)

    def EngineBytesFromNetwork(self, network, config=None, save_timing_cache=None):
        self._record("EngineBytesFromNetwork", network, config=config, save_timing_cache=save_timing_cache)

        def build():
            if self.raises:
                raise FakeBuildError("[E] In node 3 (parseGraph): unsupported operator\nmore detail")
            if save_timing_cache:
                Path(save_timing_cache).write_bytes(b"TIMING")
            return self.engine_bytes

        return build


PROFILE = [(1, 3, 16, 16), (1, 3, 32, 32), (2, 3, 64, 64)]


class FakeEngine:
    """A deserialized engine with one optimization profile for 'input'; it computes `outputs(input)`."""

    def __init__(self, profile: list[tuple[int, ...]], outputs: Callable[[np.ndarray], np.ndarray]) -> None:
        self.profile, self.outputs = profile, outputs

    def get_tensor_profile_shape(self, name, index):
        assert (name, index) == ("input", 0)
        return self.profile


class FakeTrtRunner:
    """polygraphy.backend.trt.TrtRunner over a FakeEngine."""

    def __init__(self, engine, name=None, optimization_profile=None, allocation_strategy=None,
                 weight_streaming_budget=None, weight_streaming_percent=None, debug_listener=None):
        self.engine, self.optimization_profile, self.active = engine, optimization_profile, False

    def activate(self):
        self.active = True

    def infer(self, feed_dict, check_inputs=True, *args, **kwargs):
        return {"output": self.engine.outputs(feed_dict["input"])}

    def deactivate(self):
        self.active = False


def fake_runner_backend(outputs: Callable[[np.ndarray], np.ndarray] = lambda image: image * 0.5,
                        profile: list[tuple[int, ...]] = PROFILE) -> SimpleNamespace:
    """What the trt: runner imports from Polygraphy (its TensorRT backend and its error type), faked:
    b'ENGINE' deserializes to an engine computing `outputs`; other bytes raise, as Polygraphy's
    EngineFromBytes does (G_LOGGER.critical) when TensorRT cannot deserialize them."""
    def EngineFromBytes(serialized_engine, runtime=None, dla_workspace_allocation_strategy=None):
        def load():
            if serialized_engine != b"ENGINE":
                raise FakeBuildError("Could not deserialize engine. See log for details.")
            return FakeEngine(profile, outputs)

        return load

    return SimpleNamespace(pg=SimpleNamespace(EngineFromBytes=EngineFromBytes, TrtRunner=FakeTrtRunner),
                           error=FakeBuildError)


def fake_backend(**kwargs) -> SimpleNamespace:
    return SimpleNamespace(trt=fake_tensorrt_module(), pg=FakePolygraphy(**kwargs), error=FakeBuildError)
