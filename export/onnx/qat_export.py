"""The starting point of ONNX INT8 QAT (today's PTQ export, kept) and the QDQ model written from a QAT run.

Two layouts, one mechanism: `onnx-int8` (ONNX Runtime: u8 activations, the CPU-kernel rewrites) and
`tensorrt-int8` (TensorRT's signed symmetric QDQ, zero point 0, float biases, no rewrites). The run
keeps in RUN/base/ (layout: treefuse/qat_run.py) the FP32 export, the graph the quantizer ran on
(after the rewrites, for ONNX Runtime) and its minmax PTQ QDQ model: the graph QAT mirrors, its
scales the starting ones. Exporting a run copies base/ptq.int8.onnx and replaces only initializer
values with the learned ones: nodes, names and fast-kernel layout stay those of the PTQ export.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from treefuse.errors import TreefuseError
from treefuse.export.onnx.qat import WEIGHT_LEVELS, FakeQuantQdq, write_learned
from treefuse.export.onnx.quantize import Int8Result
from treefuse.files import atomic_path, sha256_file
from treefuse.qat_run import (BASE_DIR, FP32_ONNX, LEARNED_NAME, PTQ_ONNX, REWRITTEN_ONNX, learned_record, load_into,
                              read_learned, read_settings, require_target, target_named)

# The QAT target of each --target of `export onnx`, and the runtime it lays the QDQ model out for.
LAYOUTS = {"ort-qdq": "onnxruntime", "trt-qdq": "tensorrt"}


def make_qat_base(weights_path: str | Path, calib_dir: str | Path, run_dir: str | Path, weight_bits: int,
                  target: str = "ort-qdq") -> dict[str, Any]:
    """Export, rewrite (ONNX Runtime only), calibrate (minmax) and PTQ-quantize into RUN/base; facts for qat.json."""
    import onnx

    from treefuse.calib.store import load_calibration_set
    from treefuse.export.onnx.exporter import export_onnx
    from treefuse.export.onnx.quantize import calibrate, concat_overrides, quantize_int8_model
    from treefuse.export.onnx.rewrite import pad_input_channels, pad_output_channels, split_concat_convs
    from treefuse.export.tensorrt.qdq import quantize_tensorrt_model

    if weight_bits not in WEIGHT_LEVELS or (LAYOUTS[target] == "tensorrt" and weight_bits != 8):
        raise TreefuseError(f"--weight-bits must be one of {sorted(WEIGHT_LEVELS)} (8 for TensorRT), got {weight_bits}")
    calibration = load_calibration_set(calib_dir)
    base = Path(run_dir) / BASE_DIR
    with atomic_path(base, directory=True, same_kind=lambda folder: (folder / FP32_ONNX).is_file()) as staged:
        export_onnx(weights_path, staged / FP32_ONNX)
        rewritten = onnx.load(str(staged / FP32_ONNX))
        if LAYOUTS[target] == "onnxruntime":  # the rewrites serve ONNX Runtime's CPU kernels only
            rewritten, _ = split_concat_convs(rewritten)
            rewritten, _ = pad_input_channels(rewritten)
            rewritten, _ = pad_output_channels(rewritten)
        onnx.save(rewritten, str(staged / REWRITTEN_ONNX))
        with tempfile.TemporaryDirectory(prefix="treefuse-qat-") as tmp:
            cache = Path(tmp) / "ranges.json"
            ranges = calibrate(staged / REWRITTEN_ONNX, calibration, "minmax", cache)
            if LAYOUTS[target] == "tensorrt":
                quantize_tensorrt_model(staged / REWRITTEN_ONNX, staged / PTQ_ONNX, cache, "minmax")
            else:
                quantize_int8_model(staged / REWRITTEN_ONNX, staged / PTQ_ONNX, cache, "minmax",
                                    concat_overrides(rewritten, ranges), reduce_range=weight_bits == 7)
    return {"calib_sha256": calibration.sha256, "calibration_set": str(Path(calib_dir).resolve()),
            "calibration_method": "minmax", "weight_bits": weight_bits, "ptq_sha256": sha256_file(base / PTQ_ONNX),
            "fp32_onnx_sha256": sha256_file(base / FP32_ONNX)}


def load_qat_module(run_dir: str | Path) -> tuple[FakeQuantQdq, Any]:
    """The fake-quant module of a run's PTQ model (at its starting values), and that ONNX model."""
    import onnx

    settings, base = read_settings(run_dir), Path(run_dir) / BASE_DIR
    if target_named(settings["target"]).name not in LAYOUTS:
        raise TreefuseError(f"QAT run {run_dir} is for {settings['target']}, not an ONNX layout; "
                            f"export it with its own format's --qat")
    for name in (REWRITTEN_ONNX, PTQ_ONNX):
        if not (base / name).is_file():
            raise TreefuseError(f"{run_dir}: {BASE_DIR}/{name} is missing; start a new run")
    if sha256_file(base / PTQ_ONNX) != settings.get("ptq_sha256"):
        raise TreefuseError(f"{run_dir}: {BASE_DIR}/{PTQ_ONNX} changed since the run started; start a new run")
    qdq = onnx.load(str(base / PTQ_ONNX))
    return FakeQuantQdq(qdq, onnx.load(str(base / REWRITTEN_ONNX)), settings["weight_bits"]), qdq


def load_learned(module: FakeQuantQdq, run_dir: str | Path) -> dict[str, str]:
    """Load RUN/learned.safetensors into `module`; returns the file's metadata (step, steps)."""
    state, metadata = read_learned(run_dir)
    load_into(module, state, Path(run_dir) / LEARNED_NAME)
    return metadata


def export_qat_int8(run_dir: str | Path, out_path: str | Path, paired_dir: str | Path | None = None,
                    target: str = "onnxruntime") -> Int8Result:
    """Write the QDQ INT8 ONNX model of a QAT run: the PTQ graph with the learned values, provenance inside.

    Like every INT8 export it checks itself against FP32 with the int8 gates (on `paired_dir`, else on the
    run's calibration images) and writes nothing when it misses them (GateFailed)."""
    import onnx

    from treefuse.export.onnx.quantize import INT8_SETTINGS, stamp
    from treefuse.export.tensorrt.qdq import TENSORRT_INT8_SETTINGS

    run_dir, out_path = Path(run_dir), Path(out_path)
    qat_target = {layout: name for name, layout in LAYOUTS.items()}[target]
    settings = require_target(run_dir, qat_target)
    module, qdq = load_qat_module(run_dir)
    learned = load_learned(module, run_dir)
    model = write_learned(qdq, module)
    with tempfile.TemporaryDirectory(prefix="treefuse-qat-") as tmp:  # judged before it is stamped and written
        onnx.save(model, str(Path(tmp) / "candidate.onnx"))
        verification = _verify(run_dir, Path(tmp) / "candidate.onnx", settings, paired_dir)
    base_settings = TENSORRT_INT8_SETTINGS if target == "tensorrt" else INT8_SETTINGS
    int8_settings = {**base_settings, "weights": f"int8 symmetric per-channel, levels {list(module.weight_levels)}",
                     "reduce_range": settings["weight_bits"] == 7}
    stamp(model, run_dir / BASE_DIR / FP32_ONNX, "int8", {
        "calib_sha256": settings["calib_sha256"], "calibration_set": settings["calibration_set"],
        "calibration_method": "minmax, then quantization-aware fine-tuning", "int8_settings": int8_settings,
        "float_layers": [], "target": target, "verification": verification,
        "qat": {**learned_record(run_dir, settings, learned), "ptq_sha256": settings["ptq_sha256"]}})
    with atomic_path(out_path) as staged:
        onnx.checker.check_model(model)
        onnx.save(model, str(staged))
    return Int8Result(out_path, [], None, None, verification)


def _verify(run_dir: Path, candidate: Path, settings: dict[str, Any], paired_dir: str | Path | None) -> dict[str, Any]:
    from treefuse.calib.store import load_calibration_set
    from treefuse.export.onnx.sensitivity import judged_samples, load_paired_set
    from treefuse.export.verify import verify_export
    from treefuse.gates import gates_for
    from treefuse.qat_run import miss_advice

    paired = load_paired_set(paired_dir) if paired_dir is not None else None
    calibration = None if paired else load_calibration_set(settings["calibration_set"])
    samples, what = judged_samples(paired, calibration)
    command = "treefuse export onnx --precision int8" + (" --target tensorrt" if LAYOUTS[
        target_named(settings["target"]).name] == "tensorrt" else "")
    return verify_export(f"onnx:{run_dir / BASE_DIR / FP32_ONNX}", f"onnx:{candidate}", samples, gates_for("int8"),
                         what, miss_advice(run_dir, command), reference_words="the run's FP32 ONNX model")
