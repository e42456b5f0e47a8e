"""The starting point of ONNX INT8 QAT (today's PTQ export, kept) and the QDQ model written from a QAT run.

    RUN/base/fp32.onnx          the FP32 export of the weights QAT starts from
    RUN/base/rewritten.onnx     the same after the INT8 rewrites (split concats, padded head and tail)
    RUN/base/ptq.int8.onnx      post-training INT8 of it: the graph QAT mirrors, its scales the starting ones
    RUN/qat.json                what the run is (target, weight bits, calibration, sources)
    RUN/learned.safetensors     the fake-quant module's state, written by the QAT loop (treefuse.train.qat)

Exporting a run copies base/ptq.int8.onnx and replaces only initializer values with the learned
ones: the graph, its node names and its fast-kernel layout stay those of the PTQ export.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from treefuse.errors import TreefuseError, one_line
from treefuse.export.onnx.qat import WEIGHT_LEVELS, FakeQuantQdq, write_learned
from treefuse.files import atomic_path, sha256_file

BASE_DIR = "base"
FP32_NAME, REWRITTEN_NAME, PTQ_NAME = "fp32.onnx", "rewritten.onnx", "ptq.int8.onnx"
SETTINGS_NAME, LEARNED_NAME = "qat.json", "learned.safetensors"
TARGETS = ("onnx-int8",)


def make_qat_base(weights_path: str | Path, calib_dir: str | Path, run_dir: str | Path, weight_bits: int) -> dict[str, Any]:
    """Export, rewrite, calibrate (minmax) and PTQ-quantize into RUN/base; returns facts for qat.json."""
    import onnx

    from treefuse.calib.store import load_calibration_set
    from treefuse.export.onnx.exporter import export_onnx
    from treefuse.export.onnx.quantize import calibrate, concat_overrides, quantize_int8_model
    from treefuse.export.onnx.rewrite import pad_input_channels, pad_output_channels, split_concat_convs

    if weight_bits not in WEIGHT_LEVELS:
        raise TreefuseError(f"--weight-bits must be one of {sorted(WEIGHT_LEVELS)}, got {weight_bits}")
    calibration = load_calibration_set(calib_dir)
    base = Path(run_dir) / BASE_DIR
    with atomic_path(base, directory=True, same_kind=lambda folder: (folder / FP32_NAME).is_file()) as staged:
        export_onnx(weights_path, staged / FP32_NAME)
        rewritten, _ = split_concat_convs(onnx.load(str(staged / FP32_NAME)))
        rewritten, _ = pad_input_channels(rewritten)
        rewritten, _ = pad_output_channels(rewritten)
        onnx.save(rewritten, str(staged / REWRITTEN_NAME))
        with tempfile.TemporaryDirectory(prefix="treefuse-qat-") as tmp:
            cache = Path(tmp) / "ranges.json"
            ranges = calibrate(staged / REWRITTEN_NAME, calibration, "minmax", cache)
            quantize_int8_model(staged / REWRITTEN_NAME, staged / PTQ_NAME, cache, "minmax",
                                concat_overrides(rewritten, ranges), reduce_range=weight_bits == 7)
    return {"calib_sha256": calibration.sha256, "calibration_set": str(Path(calib_dir).resolve()), "calibration_method": "minmax",
            "weight_bits": weight_bits, "ptq_sha256": sha256_file(base / PTQ_NAME),
            "fp32_onnx_sha256": sha256_file(base / FP32_NAME)}


def read_settings(run_dir: str | Path) -> dict[str, Any]:
    """RUN/qat.json, or a one-line error naming what the folder lacks."""
    path = Path(run_dir) / SETTINGS_NAME
    if not path.is_file():
        raise TreefuseError(f"{run_dir} is not a QAT run (no {SETTINGS_NAME}); make one with `treefuse qat ... --out`")
    return json.loads(path.read_text())


def load_qat_module(run_dir: str | Path) -> tuple[FakeQuantQdq, Any]:
    """The fake-quant module of a run's PTQ model (at its starting values), and that ONNX model."""
    import onnx

    settings, base = read_settings(run_dir), Path(run_dir) / BASE_DIR
    for name in (REWRITTEN_NAME, PTQ_NAME):
        if not (base / name).is_file():
            raise TreefuseError(f"{run_dir}: {BASE_DIR}/{name} is missing; start a new run")
    if sha256_file(base / PTQ_NAME) != settings["ptq_sha256"]:
        raise TreefuseError(f"{run_dir}: {BASE_DIR}/{PTQ_NAME} changed since the run started; start a new run")
    qdq = onnx.load(str(base / PTQ_NAME))
    return FakeQuantQdq(qdq, onnx.load(str(base / REWRITTEN_NAME)), settings["weight_bits"]), qdq


def load_learned(module: FakeQuantQdq, run_dir: str | Path) -> dict[str, str]:
    """Load RUN/learned.safetensors into `module`; returns the file's metadata (step, steps)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(run_dir) / LEARNED_NAME
    if not path.is_file():
        raise TreefuseError(f"{run_dir} has no {LEARNED_NAME} yet; run `treefuse qat --resume {run_dir}` first")
    with safe_open(str(path), framework="pt") as handle:
        metadata = dict(handle.metadata() or {})
    try:
        module.load_state_dict(load_file(str(path)))
    except RuntimeError as exc:
        raise TreefuseError(f"{path} does not match the run's INT8 model ({one_line(exc)})") from None
    return metadata


def export_qat_int8(run_dir: str | Path, out_path: str | Path, paired_dir: str | Path | None = None) -> Path:
    """Write the QDQ INT8 ONNX model of a QAT run: the PTQ graph with the learned values, provenance inside.

    Like every INT8 export it checks itself against FP32 with the int8 gates (on `paired_dir`, else on the
    run's calibration images) and writes nothing when it misses them (GateFailed)."""
    import onnx

    from treefuse.export.onnx.quantize import INT8_SETTINGS, stamp

    run_dir, out_path = Path(run_dir), Path(out_path)
    settings = read_settings(run_dir)
    module, qdq = load_qat_module(run_dir)
    learned = load_learned(module, run_dir)
    model = write_learned(qdq, module)
    with tempfile.TemporaryDirectory(prefix="treefuse-qat-") as tmp:  # judged before it is stamped and written
        onnx.save(model, str(Path(tmp) / "candidate.onnx"))
        verification = _verify(run_dir / BASE_DIR / FP32_NAME, Path(tmp) / "candidate.onnx", settings, paired_dir)
    int8_settings = {**INT8_SETTINGS, "weights": f"int8 symmetric per-channel, levels {list(module.weight_levels)}",
                     "reduce_range": settings["weight_bits"] == 7}
    stamp(model, run_dir / BASE_DIR / FP32_NAME, "int8", {
        "calib_sha256": settings["calib_sha256"], "calibration_set": settings["calibration_set"],
        "calibration_method": "minmax, then quantization-aware fine-tuning", "int8_settings": int8_settings,
        "float_layers": [], "target": "onnxruntime", "verification": verification,
        "qat": {"run": str(run_dir), "step": int(learned.get("step", 0)), "steps": int(learned.get("steps", 0)),
                "learned_sha256": sha256_file(run_dir / LEARNED_NAME), "ptq_sha256": settings["ptq_sha256"],
                "weights_sha256": settings.get("weights_sha256"), "distill": settings.get("distill")}})
    with atomic_path(out_path) as staged:
        onnx.checker.check_model(model)
        onnx.save(model, str(staged))
    return out_path


def _verify(fp32_path: Path, candidate: Path, settings: dict[str, Any],
            paired_dir: str | Path | None) -> dict[str, Any]:
    from treefuse.calib.store import load_calibration_set
    from treefuse.export.onnx.sensitivity import load_paired_set
    from treefuse.export.verify import samples_from_batches, verify_onnx_export
    from treefuse.gates import gates_for

    if paired_dir is not None:
        paired = load_paired_set(paired_dir)
        samples, what = samples_from_batches(paired.rainy, paired.clean, "pair"), paired.source
    else:
        calibration = load_calibration_set(settings["calibration_set"])
        samples, what = samples_from_batches(calibration.batches(8)), "the calibration set (inputs only: no task PSNR)"
    return verify_onnx_export(fp32_path, candidate, samples, gates_for("int8"), what)

