"""The trt: runner with Polygraphy's TensorRT backend mocked (no GPU or TensorRT here)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from treefuse.errors import TreefuseError
from treefuse.runtimes.backends import trt_runner
from treefuse.runtimes.backends.registry import make_runner
from treefuse.sidecar import write_sidecar

from trt_fakes import fake_runner_backend


@pytest.fixture()
def engine_path(tmp_path, monkeypatch):
    monkeypatch.setattr(trt_runner, "_import_backend", fake_runner_backend)
    path = tmp_path / "m.engine"
    path.write_bytes(b"ENGINE")
    write_sidecar(path, {"treefuse.precision": "int8", "treefuse.calibration_sha256": "ef" * 32},
                  {"tensorrt_version": "10.8.0", "gpu": "NVIDIA H100"})
    return path


def test_a_sidecar_of_another_engine_is_refused(engine_path):
    engine_path.write_bytes(b"ENGINE")  # same bytes: accepted
    make_runner(f"trt:{engine_path}").artifact()
    engine_path.write_bytes(b"REBUILT")  # a rebuilt engine beside the old sidecar
    with pytest.raises(TreefuseError, match="describes other bytes"):
        make_runner(f"trt:{engine_path}").artifact()


def test_runs_inside_profile(engine_path):
    with make_runner(f"trt:{engine_path}", threads=2) as runner:  # the CLI passes threads to every runner
        batch = np.full((2, 3, 16, 40), 0.5, np.float32)
        np.testing.assert_allclose(runner.infer(batch), batch * 0.5)
        assert runner.input_constraints() == {"min_hw": (16, 16), "max_hw": (64, 64)}
        facts = runner.describe()
    assert facts["kind"] == "trt" and facts["precision"] == "int8" and facts["artifact"]["calibration_sha256"] == "ef" * 32


@pytest.mark.parametrize("shape, message", [((1, 3, 8, 32), "outside the artifact's range"),
                                            ((1, 3, 32, 80), "outside the artifact's range"),
                                            ((3, 3, 32, 32), "batch 3 is outside")])
def test_shapes_outside_profile_are_refused(engine_path, shape, message):
    with make_runner(f"trt:{engine_path}") as runner:
        with pytest.raises(TreefuseError, match=message):
            runner.infer(np.zeros(shape, np.float32))


def test_unloadable_engine(engine_path):
    engine_path.write_bytes(b"GARBAGE")
    with pytest.raises(TreefuseError, match="not an engine"):
        make_runner(f"trt:{engine_path}").activate()


def test_missing_tensorrt_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    path = tmp_path / "m.engine"
    path.write_bytes(b"ENGINE")
    with pytest.raises(TreefuseError, match="TensorRT is not installed"):
        make_runner(f"trt:{path}").activate()
