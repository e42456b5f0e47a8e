"""Will FP16 hold this network's activations? Per-layer ranges over a calibration set, judged against FP16.

FP16's largest value is 65504; magnitudes below 2^-24 (its smallest subnormal, 5.96e-8) round
to zero, and below 2^-14 (its smallest normal, 6.10e-5) they keep fewer significant bits. The
FP32 ONNX model runs on ONNX Runtime (CPU) over a treefuse calibration set with every float node
output exposed; each layer's largest magnitude and a log2 histogram of its non-zero magnitudes
are kept, so the report is exact for the maximum and within a factor of 2 for the percentile.
Used by `export trt` (engine sidecar) and `export coreml` (FP16 compute) before they build.
"""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

from treefuse.errors import GateFailed, TreefuseError
from treefuse.gates import FP16_RANGE_GATES, Fp16RangeGates

FP16_MAX = 65504.0
FP16_SMALLEST_SUBNORMAL = 2.0 ** -24
FP16_SMALLEST_NORMAL = 2.0 ** -14
SMALL_PERCENTILE = 1.0  # the "small values" of a layer: this percentile of its non-zero magnitudes
_EXPONENTS = 300  # log2 histogram bins, frexp exponents -160..139 (float32 spans -148..128)
_OFFSET = 160


class _LayerStats:
    """Running max |x| and log2 histogram of non-zero |x| for one tensor."""

    def __init__(self) -> None:
        self.max_abs = 0.0
        self.histogram = np.zeros(_EXPONENTS, np.int64)

    def add(self, values: np.ndarray) -> None:
        magnitudes = np.abs(values.astype(np.float32, copy=False)).ravel()
        if magnitudes.size:
            self.max_abs = max(self.max_abs, float(magnitudes.max()))
        nonzero = magnitudes[magnitudes > 0]
        # |x| = m * 2^e with m in [0.5, 1): x lies in [2^(e-1), 2^e).
        exponents = np.frexp(nonzero)[1].astype(np.int64) + _OFFSET
        self.histogram += np.bincount(np.clip(exponents, 0, _EXPONENTS - 1), minlength=_EXPONENTS)

    def summary(self, name: str, op_type: str, kind: str) -> dict[str, Any]:
        count = int(self.histogram.sum())
        exponents = np.arange(_EXPONENTS) - _OFFSET
        flushed = int(self.histogram[exponents <= -24].sum())  # every value of those bins is < 2^-24
        subnormal = int(self.histogram[exponents <= -14].sum())
        small = None
        if count:
            index = int(np.searchsorted(np.cumsum(self.histogram), count * SMALL_PERCENTILE / 100.0))
            small = float(2.0 ** (exponents[index] - 1))  # lower edge of the bin holding that percentile
        return {"layer": name, "op": op_type, "kind": kind, "max_abs": self.max_abs,
                "margin_to_fp16_max": FP16_MAX - self.max_abs,
                "headroom_x": FP16_MAX / self.max_abs if self.max_abs else None,
                f"p{SMALL_PERCENTILE:g}_nonzero_abs_at_least": small, "nonzero_values": count,
                "flushed_to_zero_fraction": flushed / count if count else 0.0,
                "subnormal_fraction": subnormal / count if count else 0.0}


def activation_ranges(onnx_path: str | Path, images: np.ndarray) -> list[dict[str, Any]]:
    """Per-layer FP32 activation ranges of an ONNX model over `images` (N x 3 x H x W), plus its weights."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    model = onnx.load(str(onnx_path))
    producers = {out: node for node in model.graph.node for out in node.output if out}
    existing = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in producers if name not in existing)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # see every layer, unfused
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    input_name = session.get_inputs()[0].name
    stats: dict[str, _LayerStats] = {}
    for image in images:
        for name, value in zip(names, session.run(names, {input_name: image[None].astype(np.float32)})):
            if np.issubdtype(value.dtype, np.floating):
                stats.setdefault(name, _LayerStats()).add(value)
    layers = [stats[name].summary(producers[name].name or name, producers[name].op_type, "activation")
              for name in names if name in stats]
    for init in model.graph.initializer:
        array = numpy_helper.to_array(init)
        if np.issubdtype(array.dtype, np.floating) and array.size > 1:
            weight = _LayerStats()
            weight.add(array)
            layers.append(weight.summary(init.name, "initializer", "weight"))
    return layers


def judge(layers: list[dict[str, Any]], gates: Fp16RangeGates) -> list[str]:
    """One line per layer that FP16 would overflow or flush to zero."""
    problems = []
    for row in layers:
        if row["max_abs"] > gates.max_abs:
            problems.append(f"{row['layer']} reaches |x| = {row['max_abs']:.4g} > {gates.max_abs:g}: it overflows "
                            "FP16 (inf); keep it in FP32 or rescale the layer")
        elif row["flushed_to_zero_fraction"] > gates.max_flushed_fraction:
            problems.append(f"{row['layer']}: {100 * row['flushed_to_zero_fraction']:.2f}% of its non-zero values "
                            f"are below FP16's smallest subnormal (2^-24) and become 0")
    return problems


def fp16_report(onnx_path: str | Path, calib_dir: str | Path, gates: Fp16RangeGates = FP16_RANGE_GATES) -> dict[str, Any]:
    """The FP16 safety report of an ONNX model over a calibration set: per layer, the smallest margin, verdict."""
    from treefuse.calib.store import load_calibration_set
    from treefuse.files import sha256_file

    calibration = load_calibration_set(calib_dir)
    layers = sorted(activation_ranges(onnx_path, calibration.images), key=lambda row: -row["max_abs"])
    activations = [row for row in layers if row["kind"] == "activation"]
    if not activations:
        raise TreefuseError(f"{onnx_path} exposed no float activations to measure; is it an ONNX image model?")
    problems = judge(layers, gates)
    worst = activations[0]
    return {"kind": "treefuse-fp16-ranges", "model": str(onnx_path), "model_sha256": sha256_file(onnx_path),
            "calibration_set": str(calib_dir), "calib_sha256": calibration.sha256, "images": len(calibration),
            "image_shape": list(calibration.images.shape[1:]), "runtime": "ONNX Runtime CPU, FP32, unfused graph",
            "thresholds": {**asdict(gates), "fp16_max": FP16_MAX, "fp16_smallest_subnormal": FP16_SMALLEST_SUBNORMAL,
                           "fp16_smallest_normal": FP16_SMALLEST_NORMAL, "small_percentile": SMALL_PERCENTILE},
            "smallest_margin": {"layer": worst["layer"], "max_abs": worst["max_abs"],
                                "margin_to_fp16_max": worst["margin_to_fp16_max"], "headroom_x": worst["headroom_x"]},
            "safe": not problems, "problems": problems, "layers": layers}


def check_fp16(onnx_path: str | Path, calib_dir: str | Path, *, strict: bool = False,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """fp16_report, printed in one line; unsafe layers warn, or fail the gate when `strict`."""
    report = fp16_report(onnx_path, calib_dir)
    margin = report["smallest_margin"]
    log(f"FP16 ranges on {report['images']} calibration images: largest activation {margin['max_abs']:.4g} "
        f"({margin['layer']}), margin to 65504: {margin['margin_to_fp16_max']:.6g} ({margin['headroom_x']:.4g}x)")
    for problem in report["problems"]:
        log(f"warning: FP16: {problem}")
    if strict and report["problems"]:
        raise GateFailed(f"FP16 is unsafe for {onnx_path}: {report['problems'][0]} "
                         f"({len(report['problems'])} layer(s); drop --strict to build anyway)")
    return report


def fp16_report_for_weights(weights: str | Path, calib_dir: str | Path, *, strict: bool = False,
                            log: Callable[[str], None] = print) -> dict[str, Any]:
    """check_fp16 of the folded FP32 network of `weights` (what Core ML converts), via a temporary ONNX export."""
    import tempfile

    from treefuse.export.onnx.exporter import export_onnx

    with tempfile.TemporaryDirectory(prefix="treefuse-fp16-") as tmp:
        onnx_path = export_onnx(weights, Path(tmp) / "fp32.onnx")
        report = check_fp16(onnx_path, calib_dir, strict=strict, log=log)
    report["model"] = f"folded FP32 network of {weights}"
    return report


def write_report(report: dict[str, Any], path: Path) -> Path:
    from treefuse.files import write_json_atomic

    write_json_atomic(path, report)
    return path


def sidecar_summary(report: dict[str, Any]) -> dict[str, Any]:
    """The report without the per-weight rows, for an engine sidecar."""
    return {**report, "layers": [row for row in report["layers"] if row["kind"] == "activation"]}


def dumps(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
