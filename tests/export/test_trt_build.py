"""TensorRT engine builds with tensorrt/Polygraphy mocked at the import boundary (none runs here)."""
from __future__ import annotations

import json
import shlex
import sys

import numpy as np
import pytest

from treefuse.calib.build import build_calibration_set
from treefuse.calib.store import load_calibration_set
from treefuse.errors import TreefuseError
from treefuse.export.tensorrt import build as tensorrt_build
from treefuse.export.tensorrt.build import CalibrationFeed, build_engine, plan_engine
from treefuse.export.tensorrt.profile import ShapeProfile, parse_shape
from treefuse.files import sha256_file

from media import write_images
from trt_fakes import fake_backend, fake_runner_backend, fake_tensorrt_module, tiny_onnx

PROFILE = ShapeProfile((1, 3, 16, 16), (1, 3, 32, 48), (2, 3, 64, 64))


@pytest.fixture()
def onnx_path(tmp_path):
    return tiny_onnx(tmp_path / "m.onnx", metadata={"source_sha256": "ab" * 32, "treefuse_config": "{}"})


@pytest.fixture()
def calib_dir(tmp_path):
    images = write_images(tmp_path / "images", 3)
    return build_calibration_set(images, tmp_path / "calib", 3, (32, 48), seed=0)


def test_fp16_build_calls_and_sidecar(onnx_path, tmp_path):
    backend = fake_backend()
    out = tmp_path / "m.engine"
    build_engine(plan_engine(onnx_path, out, precision="fp16", profile=PROFILE), backend)
    assert out.read_bytes() == b"ENGINE"
    config = backend.pg.calls["CreateConfig"][0][1]
    assert config["fp16"] is True and config["int8"] is False and config["calibrator"] is None
    assert config["profiles"][0].shapes["input"] == ((1, 3, 16, 16), (1, 3, 32, 48), (2, 3, 64, 64))
    assert backend.pg.calls["NetworkFromOnnxPath"][0][0] == (str(onnx_path),)
    record = json.loads((tmp_path / "m.engine.json").read_text())["provenance"]
    assert record["onnx_sha256"] == sha256_file(onnx_path) and record["engine_sha256"] == sha256_file(out)
    assert record["tensorrt_version"] == "10.8.0" and record["gpu"] and record["precision"] == "fp16"
    assert record["source_sha256"] == "ab" * 32 and record["profile"]["input"]["max"] == [2, 3, 64, 64]
    metadata = json.loads((tmp_path / "m.engine.json").read_text())["metadata"]
    assert metadata["treefuse.format"] == "trt" and metadata["treefuse.source_sha256"] == "ab" * 32
    command = shlex.split((tmp_path / "m.engine.trtexec.sh").read_text())
    assert command[0] == "trtexec" and "--fp16" in command and "--int8" not in command
    assert "--minShapes=input:1x3x16x16" in command and "--maxShapes=input:2x3x64x64" in command


def test_timing_cache_saved_then_reused(onnx_path, tmp_path):
    cache = tmp_path / "timing.cache"
    backend = fake_backend()
    for name in ("a.engine", "b.engine"):
        build_engine(plan_engine(onnx_path, tmp_path / name, precision="fp16", profile=PROFILE, timing_cache=cache),
                     backend)
    loads = [kwargs["load_timing_cache"] for _, kwargs in backend.pg.calls["CreateConfig"]]
    assert loads == [None, str(cache)]
    assert all(kw["save_timing_cache"] == str(cache) for _, kw in backend.pg.calls["EngineBytesFromNetwork"])
    assert f"--timingCacheFile={cache}" in (tmp_path / "b.engine.trtexec.sh").read_text()


def test_int8_calibrator_fed_by_calibration_set(onnx_path, calib_dir, tmp_path):
    backend = fake_backend()
    out = tmp_path / "m.engine"
    plan = plan_engine(onnx_path, out, precision="int8", profile=PROFILE, calib_dir=calib_dir)
    build_engine(plan, backend)
    (feed,), kwargs = backend.pg.calls["Calibrator"][0]
    assert kwargs["BaseClass"] is backend.trt.IInt8EntropyCalibrator2
    calib = load_calibration_set(calib_dir)
    assert calib.sha256[:12] in kwargs["cache"]
    batches = [b["input"] for b in feed]
    assert len(batches) == 3 and all(b.shape == (1, 3, 32, 48) and b.dtype == np.float32 for b in batches)
    np.testing.assert_array_equal(batches[1][0], calib.images[1])
    config = backend.pg.calls["CreateConfig"][0][1]
    assert config["int8"] is True and config["calibrator"].data_loader is feed
    record = json.loads((tmp_path / "m.engine.json").read_text())["provenance"]
    assert record["calib_sha256"] == calib.sha256 and record["int8_source"] == "calibrator"
    assert f"--calib={kwargs['cache']}" in (tmp_path / "m.engine.trtexec.sh").read_text()


def test_feed_resizes_to_opt_shape_and_batches():
    images = np.random.default_rng(0).random((5, 3, 20, 30), dtype=np.float32)
    feed = CalibrationFeed(images, (2, 3, 40, 60))
    batches = [b["input"] for b in feed]
    assert len(feed) == 2 and [b.shape for b in batches] == [(2, 3, 40, 60)] * 2
    assert 0.0 <= min(b.min() for b in batches) and max(b.max() for b in batches) <= 1.0
    assert len(list(feed)) == 2  # re-iterable: TensorRT may rewind the calibrator
    with pytest.raises(TreefuseError, match="fewer than the opt batch"):
        CalibrationFeed(images, (8, 3, 20, 30))


def test_explicit_qdq_int8_uses_no_calibrator(tmp_path):
    model = tiny_onnx(tmp_path / "q.onnx", qdq=True, metadata={"calib_sha256": "cd" * 32})
    backend = fake_backend()
    build_engine(plan_engine(model, tmp_path / "q.engine", precision="int8", profile=PROFILE), backend)
    config = backend.pg.calls["CreateConfig"][0][1]
    assert config["int8"] is True and config["calibrator"] is None and "Calibrator" not in backend.pg.calls
    record = json.loads((tmp_path / "q.engine.json").read_text())["provenance"]
    assert record["int8_source"] == "qdq" and record["calib_sha256"] == "cd" * 32


def test_int8_refusals_write_nothing(onnx_path, calib_dir, tmp_path):
    with pytest.raises(TreefuseError, match="needs --calib"):
        plan_engine(onnx_path, tmp_path / "x.engine", precision="int8", profile=PROFILE)
    qdq = tiny_onnx(tmp_path / "q.onnx", qdq=True)
    with pytest.raises(TreefuseError, match="already quantized"):
        plan_engine(qdq, tmp_path / "x.engine", precision="int8", profile=PROFILE, calib_dir=calib_dir)
    data = np.load(calib_dir / "images.npy")
    np.save(calib_dir / "images.npy", data * 0.5)
    with pytest.raises(TreefuseError, match="changed"):
        plan_engine(onnx_path, tmp_path / "x.engine", precision="int8", profile=PROFILE, calib_dir=calib_dir)
    assert not list(tmp_path.glob("x.engine*"))


@pytest.mark.parametrize("failure, detail", [({"engine_bytes": None}, "no engine returned"),
                                             ({"raises": True}, "unsupported operator")])
def test_failed_build_writes_nothing(onnx_path, tmp_path, failure, detail):
    with pytest.raises(TreefuseError, match="could not build") as error:
        build_engine(plan_engine(onnx_path, tmp_path / "m.engine", precision="fp16", profile=PROFILE),
                     fake_backend(**failure))
    message = str(error.value)
    assert detail in message and "trtexec" in message and "\n" not in message
    assert not list(tmp_path.glob("m.engine*"))


@pytest.mark.parametrize("text", ["1x3x32", "1x4x32x32", "0x3x32x32", "1x3xAx32"])
def test_bad_shapes(text):
    with pytest.raises(TreefuseError):
        parse_shape(text)


def test_profile_order_is_checked():
    with pytest.raises(TreefuseError, match="min <= opt <= max"):
        ShapeProfile.from_text("1x3x64x64", "1x3x32x32", "1x3x128x128")


def test_real_polygraphy_calibrator_cache_round_trip(monkeypatch, tmp_path):
    # Polygraphy's own Calibrator class, subclassing a stand-in TensorRT base: cache I/O is pure Python.
    pytest.importorskip("polygraphy", reason="polygraphy is not installed (pip install 'treefuse[test]')")
    fake_trt = fake_tensorrt_module()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt)
    from polygraphy.backend.trt import Calibrator

    feed = CalibrationFeed(np.zeros((2, 3, 8, 8), np.float32), (1, 3, 8, 8))
    cache = tmp_path / "m.calib.cache"
    first = Calibrator(feed, cache=str(cache), BaseClass=fake_trt.IInt8EntropyCalibrator2)
    assert isinstance(first, fake_trt.IInt8EntropyCalibrator2) and first.read_calibration_cache() is None
    first.write_calibration_cache(memoryview(b"TRT-100800-EntropyCalibration2\ninput: 3c010a14\n"))
    second = Calibrator(feed, cache=str(cache), BaseClass=fake_trt.IInt8EntropyCalibrator2)
    assert second.read_calibration_cache() == b"TRT-100800-EntropyCalibration2\ninput: 3c010a14\n"
    assert [b["input"].shape for b in second.data_loader] == [(1, 3, 8, 8)] * 2


def test_cli_without_tensorrt_one_line_exit_2(onnx_path, tmp_path, monkeypatch, capsys):
    from treefuse.cli import main

    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError, as on this machine
    out = tmp_path / "m.engine"
    assert main(["export", "trt", "--onnx", str(onnx_path), "--precision", "fp16", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "TensorRT is not installed" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("m.engine*"))


def test_cli_bad_profile_exit_2(onnx_path, tmp_path, capsys):
    from treefuse.cli import main

    code = main(["export", "trt", "--onnx", str(onnx_path), "--precision", "fp16", "--min-shape", "1x3x900x900",
                 "--out", str(tmp_path / "m.engine")])
    assert code == 2 and "min <= opt <= max" in capsys.readouterr().err


def _engine_runs(monkeypatch, onnx_path, scale: float) -> None:
    """TensorRT's runner at its boundary: the 'engine' computes the ONNX model (on ONNX Runtime) times `scale`."""
    import onnxruntime as ort

    from treefuse.runtimes.backends import trt_runner

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])

    def outputs(image):
        return session.run(None, {session.get_inputs()[0].name: image})[0] * scale

    backend = fake_runner_backend(outputs, profile=[(1, 3, 16, 16), (1, 3, 32, 48), (2, 3, 64, 64)])
    monkeypatch.setattr(trt_runner, "_import_backend", lambda: backend)


def test_cli_builds_with_mocked_backend(onnx_path, calib_dir, tmp_path, monkeypatch, capsys):
    from treefuse.cli import main

    backend = fake_backend()
    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: backend)
    _engine_runs(monkeypatch, onnx_path, scale=1.0)
    out = tmp_path / "m.engine"
    assert main(["export", "trt", "--onnx", str(onnx_path), "--precision", "int8", "--calib", str(calib_dir),
                 "--min-shape", "1x3x16x16", "--opt-shape", "1x3x32x48", "--max-shape", "2x3x64x64",
                 "--out", str(out)]) == 0
    assert out.read_bytes() == b"ENGINE" and "trtexec" in capsys.readouterr().out


def test_cli_engine_that_misses_its_gate_is_not_written(onnx_path, tmp_path, monkeypatch, capsys):
    from treefuse.cli import main

    monkeypatch.setattr(tensorrt_build, "import_tensorrt", lambda: fake_backend())
    _engine_runs(monkeypatch, onnx_path, scale=0.9)  # an engine 10% off: far below the fp16 gate
    out = tmp_path / "m.engine"
    code = main(["export", "trt", "--onnx", str(onnx_path), "--precision", "fp16", "--min-shape", "1x3x16x16",
                 "--opt-shape", "1x3x32x48", "--max-shape", "2x3x64x64", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "misses its gates" in err and "nothing was written" in err
    assert not out.exists() and not (tmp_path / "m.engine.json").exists()


def test_live_tensorrt_build(onnx_path, tmp_path):
    pytest.importorskip("tensorrt", reason="tensorrt is not installed: no NVIDIA GPU or wheel on this machine")
    out = build_engine(plan_engine(onnx_path, tmp_path / "m.engine", precision="fp16", profile=PROFILE))
    assert out.stat().st_size > 0
