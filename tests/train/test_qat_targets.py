"""QAT for every INT8 target on a tiny network: each scheme computes its runtime's arithmetic, each exporter writes
what the run learned (no re-calibration), bad run folders are one line (exit 2), a gate miss is exit 1 with advice."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from treefuse import qat_run as layout
from treefuse.cli import main
from treefuse.files import sha256_file

from media import write_images


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    from treefuse.calib.build import build_calibration_set

    root = tmp_path_factory.mktemp("calib")
    return build_calibration_set(write_images(root / "images", 3), root / "set", 3, (32, 32), seed=0)


def qat_args(weights, pairs, calib, out, target, steps="3"):
    return ["qat", "--weights", str(weights), "--data", str(pairs), "--calib", str(calib), "--target", target,
            "--steps", steps, "--patch", "16", "--batch", "1", "--synthetic-fraction", "0", "--checkpoint-every", "2",
            "--out", str(out)]


@pytest.fixture(scope="module")
def xnnpack_run(tiny_weights, paired_dir, calib_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("xnn") / "run"
    # a format names its scheme; ranges frozen at step 2 of 3, so a resumed run crosses the freeze
    assert main([*qat_args(tiny_weights, paired_dir, calib_dir, run, "executorch"), "--freeze-ranges-at", "2"]) == 0
    return run


def psnr(a, b):
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def image(height=24, width=32, seed=0):
    return np.random.default_rng(seed).random((1, 3, height, width), dtype=np.float32)


# --- TensorRT: signed symmetric QDQ, zero point 0, computed as ONNX's Q/DQ define it ---------------------------

def trt_run(weights, calib, folder):
    from treefuse.export.onnx.qat_export import make_qat_base
    from treefuse.train import qat
    from treefuse.train.run_dir import RunDir

    RunDir.create(folder, qat.qat_config("unused", 4, patch_size=16, batch_size=2, synthetic_fraction=0.0))
    facts = make_qat_base(weights, calib, folder, 8, "trt-qdq")
    layout.write_settings(folder, {"target": "trt-qdq", "weights": str(weights), "weights_sha256": sha256_file(weights),
                                   "distill": 1.0, "scale_lr_factor": 10.0, **facts})
    return folder


def test_tensorrt_scheme_is_signed_symmetric_and_computes_what_the_qdq_graph_does(tiny_weights, calib_dir, tmp_path):
    from treefuse.export.onnx.qat_export import load_qat_module

    run = trt_run(tiny_weights, calib_dir, tmp_path / "run")
    module, qdq = load_qat_module(run)
    zero_points = [numpy_helper.to_array(i) for i in qdq.graph.initializer if i.name.endswith("zero_point")]
    assert zero_points and all(z.dtype == np.int8 and not z.any() for z in zero_points)  # TensorRT's only layout
    assert {n.op_type for n in qdq.graph.node} >= {"Concat", "Relu"} and module.float_biases  # unlike ORT's
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # ONNX's Q/DQ, as TensorRT reads it
    batch = image()
    reference = ort.InferenceSession(str(run / "base" / "ptq.int8.onnx"), options,
                                     providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]
    with torch.no_grad():
        ours = module(torch.from_numpy(batch)).numpy()
    assert np.abs(ours - reference).max() < 1e-3
    with torch.no_grad():  # saturation at -128 on the signed side, as QuantizeLinear to int8 does
        name = next(iter(module.multipliers))
        module.multipliers[name].fill_(1e-3)
    assert np.abs(module(torch.from_numpy(batch)).detach().numpy() - ours).max() > 1e-3  # the scales are live


def test_tensorrt_run_exports_its_learned_values_with_zero_points_kept(tiny_weights, calib_dir, tmp_path, capsys):
    from treefuse.export.onnx.qat_export import load_qat_module

    run = trt_run(tiny_weights, calib_dir, tmp_path / "run")
    module, _ = load_qat_module(run)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for multiplier in module.scale_parameters():
            multiplier.mul_(1 + 0.1 * (torch.rand(multiplier.shape, generator=generator) - 0.5))
    layout.save_learned(run, module.state_dict(), 4, 4)
    out = tmp_path / "m.trt.onnx"
    assert main(["export", "onnx", "--precision", "int8", "--target", "tensorrt", "--qat", str(run),
                 "--out", str(out)]) == 0
    exported = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(out)).graph.initializer}
    assert all(np.array_equal(exported[module.names[k]], module.scale(module.names[k]).detach().numpy())
               for k in module.multipliers)
    assert all(not v.any() for k, v in exported.items() if k.endswith("zero_point"))
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert json.loads(meta["treefuse_provenance"])["qat"]["target"] == "trt-qdq"
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        assert psnr(session.run(None, {"input": image()})[0], module(torch.from_numpy(image())).numpy()) > 45
    # An ONNX Runtime layout is not TensorRT's: the run says which it learned.
    assert main(["export", "onnx", "--precision", "int8", "--qat", str(run), "--out", str(tmp_path / "o.onnx")]) == 2
    assert "--target ort-qdq" in capsys.readouterr().err


# --- XNNPACK (ExecuTorch): PT2E QAT, converted as learned -------------------------------------------------------

def qat_network(run):
    from treefuse.export.observed_qat import load_learned
    from treefuse.export.pt2e.qat import load_network

    network = load_network(run)
    load_learned(network, run)
    return network


def test_xnnpack_run_freezes_its_observers_and_resumes_exactly(xnnpack_run, tiny_weights, paired_dir, calib_dir,
                                                               tmp_path):
    learned, _ = layout.read_learned(xnnpack_run)
    flags = [v for k, v in learned.items() if k.endswith("observer_enabled")]
    assert flags and not any(int(f) for f in flags)  # frozen at step 2
    assert any(k.endswith("fake_quant_enabled") and int(v) for k, v in learned.items())
    split = tmp_path / "split"
    assert main([*qat_args(tiny_weights, paired_dir, calib_dir, split, "xnnpack-int8"), "--freeze-ranges-at", "2",
                 "--chunk", "2"]) == 0
    assert main(["qat", "--resume", str(split)]) == 0
    resumed, _ = layout.read_learned(split)
    assert learned.keys() == resumed.keys() and all(torch.equal(learned[k], resumed[k]) for k in learned)


def test_executorch_export_writes_the_learned_program(xnnpack_run, tmp_path):
    from executorch.runtime import Runtime

    from treefuse.export.pt2e.qat import converted_from_run

    out = tmp_path / "m.int8.pte"
    assert main(["export", "executorch", "--precision", "int8", "--qat", str(xnnpack_run), "--max-size", "64x64",
                 "--out", str(out)]) == 0
    record = json.loads((tmp_path / "m.int8.pte.json").read_text())
    assert "qat" in json.dumps(record) and str(xnnpack_run) in json.dumps(record)
    batch = torch.from_numpy(image())
    program = Runtime.get().load_program(str(out)).load_method("forward")
    ours = program.execute([batch])[0].numpy()
    with torch.no_grad():
        learned = qat_network(xnnpack_run)(batch).numpy()
        start = _start_network(xnnpack_run)(batch).numpy()
    assert psnr(ours, learned) > 40  # the QAT network's own output, to float summation order
    assert psnr(ours, learned) > psnr(ours, start)  # closer to the learned values than to the calibrated start
    converted, _ = converted_from_run(xnnpack_run)  # what was lowered: every activation scale is a learned one
    written = {np.float32(n.args[1]) for n in converted.graph.nodes
               if n.target == torch.ops.quantized_decomposed.quantize_per_tensor.default}
    state, _ = layout.read_learned(xnnpack_run)
    learned_scales = {np.float32(v.item()) for k, v in state.items() if k.endswith(".scale") and v.numel() == 1}
    assert written and written <= learned_scales
    # per-channel weight scales too: convert_pt2e's observers would give them x 255/254
    per_channel = [getattr(converted, n.args[1].target) for n in converted.graph.nodes
                   if n.target == torch.ops.quantized_decomposed.dequantize_per_channel.default]
    learned_rows = {tuple(v.tolist()) for k, v in state.items() if k.endswith(".scale") and v.numel() > 1}
    assert per_channel and {tuple(s.tolist()) for s in per_channel} <= learned_rows
    ops = {"quantized_decomposed.quantize_per_tensor.default", "quantized_decomposed.dequantize_per_channel.default"}
    levels = {(str(n.target).split(".")[1], *n.args[-3:-1]) for n in converted.graph.nodes
              if n.op == "call_function" and str(n.target) in ops}
    assert levels == {("quantize_per_tensor", -128, 127), ("dequantize_per_channel", -127, 127)}  # XNNPACK's int8


def _start_network(run):
    from treefuse.export.pt2e.qat import load_network

    return load_network(run)


def test_a_qat_run_that_misses_the_gate_exits_1_with_advice_and_writes_nothing(xnnpack_run, tmp_path, capsys):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(xnnpack_run, broken)
    learned, metadata = layout.read_learned(broken)
    ruined = {k: (-3 * v if k.endswith("weight") else v) for k, v in learned.items()}
    layout.save_learned(broken, ruined, int(metadata["step"]), int(metadata["steps"]))
    out = tmp_path / "m.int8.pte"
    assert main(["export", "executorch", "--precision", "int8", "--qat", str(broken), "--max-size", "64x64",
                 "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "--target xnnpack-int8" in err and "export executorch --precision int8 --qat" in err
    assert not out.exists() and not (tmp_path / "m.int8.pte.json").exists()


@pytest.mark.parametrize("damage", ["missing", "no settings", "corrupt settings", "corrupt learned", "other target"])
def test_a_bad_run_folder_is_one_line_exit_2(xnnpack_run, tiny_weights, calib_dir, tmp_path, capsys, damage):
    import shutil

    run = tmp_path / "run"
    if damage != "missing":
        shutil.copytree(xnnpack_run, run)
    if damage == "no settings":
        (run / layout.SETTINGS_NAME).unlink()
    elif damage == "corrupt settings":
        (run / layout.SETTINGS_NAME).write_text("{not json")
    elif damage == "corrupt learned":
        (run / layout.LEARNED_NAME).write_bytes(b"\x00" * 64)
    elif damage == "other target":
        run = trt_run(tiny_weights, calib_dir, tmp_path / "trt")
    out = tmp_path / "m.int8.pte"
    assert main(["export", "executorch", "--precision", "int8", "--qat", str(run), "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("treefuse: error:") and not out.exists()


# --- Core ML w8a8: coremltools' LinearQuantizer, finalized as learned --------------------------------------------

def test_coreml_run_exports_the_learned_package(tiny_weights, paired_dir, calib_dir, tmp_path):
    from treefuse.export.coreml.qat import finalized_from_run, load_network
    from treefuse.runtimes.backends.registry import make_runner

    run = tmp_path / "run"
    assert main(qat_args(tiny_weights, paired_dir, calib_dir, run, "coreml")) == 0
    assert layout.read_settings(run)["target"] == "coreml-w8a8"
    out = tmp_path / "m.w8a8.mlpackage"
    assert main(["export", "coreml", "--precision", "w8a8", "--qat", str(run), "--min-size", "16x16",
                 "--max-size", "64x64", "--out", str(out)]) == 0
    with make_runner(f"coreml:{out}") as runner:
        ours = runner.infer(image())
    finalized, _ = finalized_from_run(run)
    with torch.no_grad():
        learned = finalized(torch.from_numpy(image())).numpy()
        start = load_network(run)(torch.from_numpy(image())).numpy()
    assert psnr(ours, learned) > 35  # FP16 compute between the int8 steps
    assert psnr(learned, start) < 80  # the package holds learned values, not the start's


def test_a_post_training_miss_names_the_cheapest_route_then_its_formats_qat(tiny_weights, calib_dir, tmp_path, capsys,
                                                                           monkeypatch):
    from treefuse import gates

    monkeypatch.setitem(gates.DEFAULT_GATES, "int8", gates.Gates(199.0, 0.1, precision="int8"))  # unreachable
    for target, scheme in (("onnxruntime", "ort-qdq"), ("tensorrt", "trt-qdq")):
        out = tmp_path / f"{target}.onnx"
        assert main(["export", "onnx", "--weights", str(tiny_weights), "--precision", "int8", "--target", target,
                     "--calib", str(calib_dir), "--out", str(out)]) == 1
        err = capsys.readouterr().err
        assert err.index("--paired-images") < err.index(f"treefuse qat --weights W --data TRAIN_PAIRS --target {scheme}")
        assert ("--target tensorrt --qat RUN" in err) == (target == "tensorrt") and not out.exists()


# --- XNNPACK (LiteRT): the same run's convert_pt2e program through litert-torch, float input and output ----------

def litert_or_skip():
    from treefuse.export.litert.exporter import converter_missing

    pytest.importorskip("ai_edge_litert", reason="LiteRT is not installed (pip install 'treefuse[litert]')")
    if converter_missing():
        pytest.skip(converter_missing())


def litert_export(run, out):
    return main(["export", "litert", "--precision", "int8", "--qat", str(run), "--size", "32x32", "--out", str(out)])


def tflite_quantization(path):
    """The scales of every INT8 tensor of a .tflite, and its input and output dtypes."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    scales = [d["quantization_parameters"]["scales"] for d in interpreter.get_tensor_details() if d["dtype"] == np.int8]
    io = [d["dtype"] for d in (*interpreter.get_input_details(), *interpreter.get_output_details())]
    return scales, io


def output_step(network):
    """The scale of the fake-quantizer that makes the network's output: one output quantization step."""
    last = next(iter(n for n in network.graph.nodes if n.op == "output")).args[0][0]
    return float(getattr(network, last.target).scale)


def test_litert_export_writes_the_learned_model_with_float_input_and_output(xnnpack_run, tmp_path):
    from treefuse.runtimes.backends.registry import make_runner

    litert_or_skip()
    out = tmp_path / "m.int8.tflite"
    assert litert_export(xnnpack_run, out) == 0
    qat = json.loads((tmp_path / "m.int8.tflite.json").read_text())["provenance"]["qat"]
    assert qat["run"] == str(xnnpack_run) and qat["target"] == "xnnpack-int8"
    batch = image(40, 56, seed=3)
    with make_runner(f"litert:{out}") as runner:
        ours = runner.infer(batch)
    network = qat_network(xnnpack_run)
    with torch.no_grad():
        learned = network(torch.from_numpy(batch)).numpy()
        start = _start_network(xnnpack_run)(torch.from_numpy(batch)).numpy()
    scales, io = tflite_quantization(out)
    assert io == [np.float32, np.float32]  # strict QDQ: the program's first quantize and last dequantize are ops
    state, _ = layout.read_learned(xnnpack_run)
    learned_scales = {float(v) for k, v in state.items() if k.endswith(".scale") and v.numel() == 1}
    channel_scales = [v.numpy() for k, v in state.items() if k.endswith(".scale") and v.numel() > 1]
    activations, weights = [s for s in scales if s.size == 1], [s for s in scales if s.size > 1]
    assert activations and {float(s[0]) for s in activations} <= learned_scales  # as trained, not re-observed
    assert len(weights) == len(channel_scales)
    assert all(any(np.array_equal(s, c) for c in channel_scales) for s in weights)
    step = output_step(network)
    difference = np.abs(ours - learned)  # integer requantization vs float fake quantization: rounding flips
    assert difference.mean() < step / 2 and np.mean(difference <= step * 1.001) > 0.95, difference.max() / step
    assert psnr(ours, learned) > psnr(ours, start)


def test_a_litert_qat_gate_miss_exits_1_with_advice_and_writes_nothing(xnnpack_run, tmp_path, capsys, monkeypatch):
    from treefuse import gates

    litert_or_skip()
    monkeypatch.setitem(gates.DEFAULT_GATES, "int8", gates.Gates(199.0, 0.1, precision="int8"))  # unreachable
    out = tmp_path / "m.int8.tflite"
    assert litert_export(xnnpack_run, out) == 1
    err = capsys.readouterr().err
    assert "--target xnnpack-int8" in err and "export litert --precision int8 --qat" in err
    assert not out.exists() and not (tmp_path / "m.int8.tflite.json").exists()


@pytest.mark.parametrize("damage", ["missing", "corrupt learned", "other target"])
def test_a_bad_run_folder_for_litert_is_one_line_exit_2(xnnpack_run, tiny_weights, calib_dir, tmp_path, capsys,
                                                        damage):
    import shutil

    run = tmp_path / "run"
    if damage == "corrupt learned":
        shutil.copytree(xnnpack_run, run)
        (run / layout.LEARNED_NAME).write_bytes(b"\x00" * 64)
    elif damage == "other target":
        run = trt_run(tiny_weights, calib_dir, tmp_path / "trt")
    out = tmp_path / "m.int8.tflite"
    assert litert_export(run, out) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("treefuse: error:") and not out.exists()
    assert "xnnpack-int8" in errors[0] if damage == "other target" else True


def test_benchmark_puts_the_qat_row_beside_post_training_and_advises_qat_on_a_miss(tiny_weights, paired_dir,
                                                                                   calib_dir, tmp_path, capsys,
                                                                                   monkeypatch):
    from treefuse import gates

    run = tmp_path / "ort-run"
    assert main(qat_args(tiny_weights, paired_dir, calib_dir, run, "onnx")) == 0
    bench = ["benchmark", "--weights", str(tiny_weights), "--images", str(paired_dir), "--formats", "onnx",
             "--calib", str(calib_dir), "--qat", str(run), "--size", "32x32", "--warmup", "0", "--iters", "1"]
    assert main([*bench, "--out", str(tmp_path / "b")]) == 0
    rows = {(r["format"], r["precision"], r["route"]): r
            for r in json.loads((tmp_path / "b" / "benchmark.json").read_text())["rows"] if r["format"] == "onnx"}
    assert rows["onnx", "int8", "qat"]["verdict"] == "pass" and rows["onnx", "int8", "ptq"]["verdict"] == "pass"
    assert (tmp_path / "b" / "parity" / "onnx-int8-qat.json").is_file() and "int8 QAT" in capsys.readouterr().out
    monkeypatch.setitem(gates.DEFAULT_GATES, "int8", gates.Gates(199.0, 0.1, precision="int8"))  # every INT8 row misses
    main([*bench, "--out", str(tmp_path / "c")])  # both INT8 exports refuse themselves: rows say why
    rows = {(r["format"], r["precision"], r["route"]): r
            for r in json.loads((tmp_path / "c" / "benchmark.json").read_text())["rows"] if r["format"] == "onnx"}
    assert "--target ort-qdq" in rows["onnx", "int8", "ptq"]["reason"]  # the post-training miss names its QAT command
    assert "fine-tune longer" in rows["onnx", "int8", "qat"]["reason"]
    other = tmp_path / "other.safetensors"
    other.write_bytes(tiny_weights.read_bytes()[:-1] + b" ")  # other bytes: not the run's source weights
    assert main([bench[0], "--weights", str(other), *bench[3:], "--out", str(tmp_path / "d")]) == 2
