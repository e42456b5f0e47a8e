"""This CPU's model-shaped limits (FP32 and INT8 convolutions of the model's own shapes) and every engine, one run.

    python benchmarks/model_limits.py [--size 512x512] [--threads 2] [--iters 5] [--json OUT]

The limit is what the model's convolutions alone cost in the fastest kernels this machine has,
shape by shape (PyTorch's FP32 convolution NCHW or channels-last, its x86/fbgemm/onednn INT8
quantized convolution, and a one-convolution ONNX model on ONNX Runtime and on OpenVINO, FP32 or
QDQ INT8: the fastest wins), summed over the folded model's convolutions. Each engine's
fraction of its limit = limit / engine latency (1.0: the engine runs at the kernels' speed).
Engines and limits are measured in the same process (the limits before and after the engines,
the faster kept). Speed figures name the CPU flags.
"""
from __future__ import annotations

import argparse
import json
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from treefuse.checkpoint import DEFAULT_WEIGHTS, load_weights
from treefuse.cli.args import parse_size
from treefuse.device import cpu_flags_text, device_fingerprint
from treefuse.folding import fold
from treefuse.runtimes.backends.registry import make_runner
from treefuse.runtimes.measurements.bench import measure_interleaved

ARTIFACTS = Path(__file__).resolve().parents[1] / "reports" / "artifacts"
# (label, spec, which limit judges it)
ENGINES = [("ONNX Runtime FP32", "onnx:{a}/default.onnx", "fp32"),
           ("ONNX Runtime INT8", "onnx:{a}/default.int8.onnx", "int8"),
           ("OpenVINO FP32", "openvino:{a}/default.onnx", "fp32"),
           ("OpenVINO INT8", "openvino:{a}/default.int8.onnx", "int8"),
           ("ExecuTorch INT8", "executorch:{a}/default.int8.pte", "int8"),
           ("LiteRT INT8", "litert:{a}/default.int8.tflite", "int8")]


def conv_shapes(weights: Path) -> Counter:
    """(in, out, kernel, dilation) -> how many convolutions of that shape the folded model runs."""
    network = fold(load_weights(weights).model)
    return Counter((m.in_channels, m.out_channels, m.kernel_size[0], m.dilation[0])
                   for m in network.modules() if isinstance(m, torch.nn.Conv2d))


def _best_seconds(run, iters: int) -> float:
    run()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def fp32_seconds(shape: tuple[int, int, int, int], size: tuple[int, int], iters: int) -> tuple[float, str]:
    """The fastest FP32 convolution of this shape: oneDNN in NCHW or channels-last."""
    cin, cout, kernel, dilation = shape
    weight, bias = torch.randn(cout, cin, kernel, kernel), torch.randn(cout)
    best = []
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.rand(1, cin, *size).contiguous(memory_format=layout)
        w = weight.contiguous(memory_format=layout)
        with torch.inference_mode():
            seconds = _best_seconds(lambda: F.conv2d(x, w, bias, padding=dilation * (kernel // 2), dilation=dilation),
                                    iters)
        best.append((seconds, "channels_last" if layout == torch.channels_last else "nchw"))
    return min(best)


def int8_seconds(shape: tuple[int, int, int, int], size: tuple[int, int], iters: int) -> tuple[float, str]:
    """The fastest INT8 convolution of this shape among PyTorch's quantized engines here (u8 x s8, per channel)."""
    from torch.ao.nn.quantized import functional as qF

    cin, cout, kernel, dilation = shape
    warnings.filterwarnings("ignore", message=".*quantized tensor creation functions.*")  # deprecated, still fastest
    best = []
    for engine in [e for e in ("x86", "fbgemm", "onednn") if e in torch.backends.quantized.supported_engines]:
        torch.backends.quantized.engine = engine
        x = torch.quantize_per_tensor(torch.rand(1, cin, *size).contiguous(memory_format=torch.channels_last), 0.02,
                                      0, torch.quint8)  # channels-last: the layout fbgemm/oneDNN compute in
        scales = torch.full((cout,), 0.01)
        w = torch.quantize_per_channel(torch.randn(cout, cin, kernel, kernel), scales, torch.zeros(cout, dtype=torch.long),
                                       0, torch.qint8)
        bias = torch.randn(cout)
        with torch.inference_mode():
            seconds = _best_seconds(lambda: qF.conv2d(x, w, bias, padding=dilation * (kernel // 2), dilation=dilation,
                                                      scale=0.05, zero_point=0), iters)
        best.append((seconds, engine))
    return min(best)


def one_conv_onnx(shape: tuple[int, int, int, int], int8: bool) -> bytes:
    """An ONNX model of one convolution of this shape; INT8 as QDQ (uint8 activations, int8 per-channel weights)."""
    from onnx import TensorProto, helper, numpy_helper

    cin, cout, kernel, dilation = shape
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((cout, cin, kernel, kernel)).astype(np.float32)
    pad = dilation * (kernel // 2)
    conv_in, weight_name, nodes = "x", "w", []
    inits = [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(rng.standard_normal(cout).astype(np.float32), "b")]
    if int8:
        inits = [numpy_helper.from_array(np.round(weight * 20).clip(-127, 127).astype(np.int8), "wq"),
                 numpy_helper.from_array(np.full(cout, 0.05, np.float32), "ws"),
                 numpy_helper.from_array(np.zeros(cout, np.int8), "wz"), inits[1],
                 numpy_helper.from_array(np.array(0.02, np.float32), "s"), numpy_helper.from_array(np.array(0, np.uint8), "z")]
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
                 helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
                 helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], axis=0)]
        conv_in, weight_name = "xd", "wd"
    nodes.append(helper.make_node("Conv", [conv_in, weight_name, "b"], ["c" if int8 else "y"], pads=[pad] * 4,
                                  dilations=[dilation] * 2, kernel_shape=[kernel] * 2))
    if int8:
        nodes += [helper.make_node("QuantizeLinear", ["c", "s", "z"], ["yq"]),
                  helper.make_node("DequantizeLinear", ["yq", "s", "z"], ["y"])]
    graph = helper.make_graph(nodes, "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, cin, None, None])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString()


def runtime_seconds(shape, size, iters: int, int8: bool, threads: int) -> list[tuple[float, str]]:
    """One convolution of this shape on ONNX Runtime and on OpenVINO (each one's own kernels), where installed."""
    x = np.random.default_rng(0).random((1, shape[0], *size), dtype=np.float32)
    model = one_conv_onnx(shape, int8)
    found = []
    try:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        found.append((_best_seconds(lambda: session.run(None, {"x": x}), iters), "onnxruntime"))
    except ImportError:
        pass
    try:
        import openvino as ov

        core = ov.Core()
        ov_model = core.read_model(model=model, weights=b"")
        ov_model.reshape({"x": list(x.shape)})
        compiled = core.compile_model(ov_model, "CPU", {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                                                        "INFERENCE_PRECISION_HINT": "f32"})
        found.append((_best_seconds(lambda: compiled(x), iters), "openvino"))
    except ImportError:
        pass
    return found


def limits(weights: Path, size: tuple[int, int], iters: int) -> dict[str, dict]:
    """Per precision: the model-shaped limit in ms, its GMAC, and each shape's throughput and kernel."""
    shapes = conv_shapes(weights)
    result = {}
    for precision, measure in (("fp32", fp32_seconds), ("int8", int8_seconds)):
        rows, total_ms, total_macs = [], 0.0, 0
        for shape, count in shapes.items():
            seconds, kernel = min([measure(shape, size, iters),
                                   *runtime_seconds(shape, size, iters, precision == "int8", torch.get_num_threads())])
            macs = shape[0] * shape[1] * shape[2] ** 2 * size[0] * size[1]
            rows.append({"shape": list(shape), "count": count, "gmac_per_s": macs / seconds / 1e9, "kernel": kernel})
            total_ms += count * seconds * 1000
            total_macs += count * macs
        result[precision] = {"limit_ms": total_ms, "gmac": total_macs / 1e9, "shapes": rows}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, default=DEFAULT_WEIGHTS)
    parser.add_argument("--size", default="512x512")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    size = parse_size(args.size)
    torch.set_num_threads(args.threads)
    runners, labels = [], []
    for label, spec, precision in ENGINES:
        try:
            runners.append(make_runner(spec.format(a=ARTIFACTS), threads=args.threads).activate())
            labels.append((label, precision))
        except Exception as exc:  # noqa: BLE001 - a runtime missing here is a row left out, said so
            print(f"{label}: left out ({str(exc).splitlines()[0][:120]})")
    before = limits(args.weights, size, args.iters)
    measured = measure_interleaved(runners, (1, 3, *size), warmup=1, iters=args.iters)
    # Measured before and after the engines (a shared machine's load drifts); the faster of the two is the limit.
    bounds = {p: min(before[p], after, key=lambda b: b["limit_ms"])
              for p, after in limits(args.weights, size, args.iters).items()}
    print(f"CPU: {cpu_flags_text()}, {args.threads} threads, {size[0]}x{size[1]}, median of {args.iters}")
    for precision, bound in bounds.items():
        kernels = ", ".join(f"{tuple(r['shape'])}x{r['count']}: {r['gmac_per_s']:.0f} GMAC/s ({r['kernel']})"
                            for r in bound["shapes"])
        print(f"{precision.upper()} model-shaped limit: {bound['limit_ms']:.1f} ms for {bound['gmac']:.2f} GMAC [{kernels}]")
    print(f"{'engine':<20} {'p50 ms':>8} {'limit ms':>9} {'fraction of limit':>18}")
    rows = []
    for (label, precision), result in zip(labels, measured):
        p50 = result["latency_ms"]["p50"]
        fraction = bounds[precision]["limit_ms"] / p50
        rows.append({"engine": label, "spec": result["spec"], "p50_ms": p50, "limit": precision, "fraction": fraction})
        print(f"{label:<20} {p50:>8.1f} {bounds[precision]['limit_ms']:>9.1f} {fraction:>18.2f}")
    if args.json:
        args.json.write_text(json.dumps({"device": device_fingerprint(args.threads), "size": list(size),
                                         "iters": args.iters, "limits": bounds, "engines": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
