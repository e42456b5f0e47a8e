"""Recording stand-ins for tensorrt and Polygraphy's TensorRT backend (neither can run here)."""
from __future__ import annotations

import types
from pathlib import Path
from types import SimpleNamespace

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


class FakePolygraphy:
    """Records the loader calls treefuse makes; builds b'ENGINE', or returns None / raises when told to fail."""

    def __init__(self, engine_bytes: bytes | None = b"ENGINE", raises: bool = False) -> None:
        self.calls: dict[str, list] = {}
        self.engine_bytes = engine_bytes
        self.raises = raises

        class Profile:
            def __init__(self):
                self.shapes = {}

            def add(self, name, min, opt, max):
                self.shapes[name] = (tuple(min), tuple(opt), tuple(max))
                return self

        self.Profile = Profile

    def _record(self, name, *args, **kwargs):
        self.calls.setdefault(name, []).append((args, kwargs))

    def NetworkFromOnnxPath(self, path, **kwargs):
        self._record("NetworkFromOnnxPath", path, **kwargs)
        return ("network", path)

    def Calibrator(self, data_loader, **kwargs):
        self._record("Calibrator", data_loader, **kwargs)
        return SimpleNamespace(data_loader=data_loader, **kwargs)

    def CreateConfig(self, **kwargs):
        self._record("CreateConfig", **kwargs)
        return ("config", kwargs)

    def EngineBytesFromNetwork(self, network, config=None, save_timing_cache=None):
        self._record("EngineBytesFromNetwork", network, config=config, save_timing_cache=save_timing_cache)

        def build():
            if self.raises:
                raise FakeBuildError("[E] In node 3 (parseGraph): unsupported operator\nmore detail")
            if save_timing_cache:
                Path(save_timing_cache).write_bytes(b"TIMING")
            return self.engine_bytes

        return build


def fake_backend(**kwargs) -> SimpleNamespace:
    return SimpleNamespace(trt=fake_tensorrt_module(), pg=FakePolygraphy(**kwargs), error=FakeBuildError)
