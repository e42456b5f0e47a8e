"""ONNX -> TensorRT engine (fp16 or int8) through Polygraphy's TensorRT loaders.

INT8 comes either from an explicitly quantized (QDQ) ONNX model or from TensorRT's
entropy calibrator fed by a treefuse calibration set, with a calibration cache keyed by
the set's hash. Beside every engine: `<engine>.json` (provenance) and `<engine>.trtexec.sh`
(the equivalent trtexec command line).
"""
from __future__ import annotations

import json
import shlex
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import numpy as np

from treefuse.artifact import onnx_model_metadata
from treefuse.errors import TreefuseError
from treefuse.export.tensorrt.profile import ShapeProfile, format_shape
from treefuse.files import atomic_path, sha256_file
from treefuse.provenance import provenance
from treefuse.sidecar import sidecar_document, sidecar_path

PRECISIONS = ("fp16", "int8")
INPUT_NAME = "input"
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}
MISSING_TENSORRT = ("TensorRT is not installed (it needs an NVIDIA GPU): pip install 'treefuse[tensorrt]' "
                    "on a machine with CUDA and run this command there")


def import_tensorrt() -> SimpleNamespace:
    """tensorrt and Polygraphy's TensorRT backend; the one place they are imported."""
    try:
        import tensorrt
        from polygraphy.backend import trt as polygraphy_trt
        from polygraphy.exception import PolygraphyException
    except ImportError:
        raise TreefuseError(MISSING_TENSORRT) from None
    return SimpleNamespace(trt=tensorrt, pg=polygraphy_trt, error=PolygraphyException)


class CalibrationFeed:
    """A calibration set as {"input": batch} dicts at the profile's opt shape, which TensorRT calibrates with."""

    def __init__(self, images: np.ndarray, opt_shape: tuple[int, int, int, int]) -> None:
        self.images = images
        self.batch_size, _, self.height, self.width = opt_shape
        if len(images) < self.batch_size:
            raise TreefuseError(f"the calibration set holds {len(images)} images, fewer than the opt batch "
                                f"{self.batch_size}; build a larger set or lower --opt-shape's batch")

    def __len__(self) -> int:
        return len(self.images) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield {INPUT_NAME: self._at_opt_size(self.images[start:start + self.batch_size])}

    def _at_opt_size(self, batch: np.ndarray) -> np.ndarray:
        if batch.shape[2:] == (self.height, self.width):
            return np.ascontiguousarray(batch, dtype=np.float32)
        import torch
        from torch.nn import functional as F

        resized = F.interpolate(torch.from_numpy(np.array(batch)), size=(self.height, self.width), mode="bilinear",
                                align_corners=False, antialias=True)
        return np.ascontiguousarray(resized.clamp(0, 1).numpy(), dtype=np.float32)


@dataclass(frozen=True)
class EnginePlan:
    """Everything an engine build depends on, decided before TensorRT is touched."""

    onnx_path: Path
    out_path: Path
    precision: str
    profile: ShapeProfile
    int8_source: str | None  # "qdq" (explicit), "calibrator" (implicit) or None for fp16
    calib_dir: Path | None
    calib_sha256: str | None
    calib_cache: Path | None
    timing_cache: Path | None
    onnx_metadata: dict[str, str]
    tensorrt_check: dict[str, Any] = field(default_factory=dict)  # export/tensorrt/check.py: what the parser will meet
    fp16_ranges: dict[str, Any] | None = None  # export/fp16_range.py over a calibration set, when one was given


def plan_engine(onnx_path: str | Path, out_path: str | Path, *, precision: str, profile: ShapeProfile,
                calib_dir: str | Path | None = None, timing_cache: str | Path | None = None,
                fp16_calib: str | Path | None = None, strict_fp16: bool = False,
                log: Callable[[str], None] = print) -> EnginePlan:
    """Check the inputs of a build and decide how INT8 is obtained; raises on anything a user must fix.

    The model must pass the TensorRT parser check (export/tensorrt/check.py) first. With `fp16_calib`
    (or `calib_dir`), layer ranges over that calibration set are judged against FP16 and go into the
    sidecar; unsafe layers warn, or fail the gate with `strict_fp16`.
    """
    from treefuse.export.tensorrt.check import load_onnx, require_tensorrt_onnx

    onnx_path, out_path = Path(onnx_path), Path(out_path)
    if precision not in PRECISIONS:
        raise TreefuseError(f"--precision must be one of {PRECISIONS}, got {precision!r}")
    model = load_onnx(onnx_path)
    check = require_tensorrt_onnx(onnx_path, profile, model)
    metadata = onnx_model_metadata(model, onnx_path)
    explicit = any(node.op_type in QDQ_OPS for node in model.graph.node)
    int8_source, calib_sha, calib_cache = None, None, None
    if precision == "int8" and explicit and calib_dir is not None:
        raise TreefuseError(f"{onnx_path} is already quantized (QDQ, calibrated on "
                            f"{metadata.get('calib_sha256', 'an unrecorded set')}); drop --calib")
    if precision == "int8" and explicit:
        int8_source, calib_sha = "qdq", metadata.get("calib_sha256")
    elif precision == "int8":
        if calib_dir is None:
            raise TreefuseError(f"{onnx_path} has no QDQ nodes, so INT8 needs --calib CALIB_DIR "
                                "(or export an int8 ONNX first)")
        calib_sha = _verified_sha(calib_dir)
        int8_source = "calibrator"
        calib_cache = out_path.with_name(f"{out_path.stem}.calib-{calib_sha[:12]}.cache")
    fp16_ranges = _fp16_ranges(onnx_path, fp16_calib or calib_dir, strict_fp16, log)
    return EnginePlan(onnx_path, out_path, precision, profile, int8_source, Path(calib_dir) if calib_dir else None,
                      calib_sha, calib_cache, Path(timing_cache) if timing_cache else None, metadata,
                      check.to_dict(), fp16_ranges)


def _fp16_ranges(onnx_path: Path, calib_dir: str | Path | None, strict: bool,
                 log: Callable[[str], None]) -> dict[str, Any] | None:
    """FP16 safety over a calibration set (both precisions build with FP16 on), or None without a set."""
    if calib_dir is None:
        if strict:
            raise TreefuseError("--strict-fp16 needs a calibration set to measure ranges on: pass --check-fp16 CALIB_DIR")
        return None
    from treefuse.export.fp16_range import check_fp16, sidecar_summary

    return sidecar_summary(check_fp16(onnx_path, calib_dir, strict=strict, log=log))


def _verified_sha(calib_dir: str | Path) -> str:
    """The hash of an intact calibration set; a changed one is a user error here, not a gate."""
    from treefuse.calib.store import verify_calibration_set
    from treefuse.errors import GateFailed

    try:
        return verify_calibration_set(calib_dir)["sha256"]
    except GateFailed as exc:
        raise TreefuseError(f"{exc}; rebuild it with `treefuse calib build`") from None


def trtexec_command(plan: EnginePlan) -> str:
    """The trtexec command line that builds the same engine."""
    args = ["trtexec", f"--onnx={plan.onnx_path}", f"--saveEngine={plan.out_path}", "--fp16"]
    if plan.precision == "int8":
        args.append("--int8")
    for flag, shape in (("min", plan.profile.min), ("opt", plan.profile.opt), ("max", plan.profile.max)):
        args.append(f"--{flag}Shapes={INPUT_NAME}:{format_shape(shape)}")
    if plan.calib_cache:
        # trtexec cannot run a Python calibrator; it reads the cache this build wrote.
        args.append(f"--calib={plan.calib_cache}")
    if plan.timing_cache:
        args.append(f"--timingCacheFile={plan.timing_cache}")
    return shlex.join(args)


def trtexec_strongly_typed(plan: EnginePlan) -> str | None:
    """For an explicit (QDQ) INT8 model: the strongly typed trtexec line NVIDIA recommends from TensorRT 10.12 on.

    Strong typing takes precision from the model alone, so no --fp16/--int8 (TensorRT 11 removes them);
    the float layers then run in FP32, since this model's float parts are FP32.
    """
    if plan.int8_source != "qdq":
        return None
    args = ["trtexec", f"--onnx={plan.onnx_path}", f"--saveEngine={plan.out_path}", "--stronglyTyped"]
    args += [f"--{flag}Shapes={INPUT_NAME}:{format_shape(shape)}"
             for flag, shape in (("min", plan.profile.min), ("opt", plan.profile.opt), ("max", plan.profile.max))]
    return shlex.join(args)


def make_config(backend: SimpleNamespace, plan: EnginePlan) -> Any:
    """Polygraphy's CreateConfig for the plan: precisions, profile, calibrator, timing cache."""
    pg = backend.pg
    profile = pg.Profile().add(INPUT_NAME, min=plan.profile.min, opt=plan.profile.opt, max=plan.profile.max)
    calibrator = None
    if plan.int8_source == "calibrator":
        from treefuse.calib.store import load_calibration_set

        feed = CalibrationFeed(load_calibration_set(plan.calib_dir).images, plan.profile.opt)
        calibrator = pg.Calibrator(feed, cache=str(plan.calib_cache), BaseClass=backend.trt.IInt8EntropyCalibrator2)
    load_cache = str(plan.timing_cache) if plan.timing_cache and plan.timing_cache.is_file() else None
    # fp16 stays on under int8 so layers TensorRT leaves unquantized run in fp16, not fp32.
    return pg.CreateConfig(fp16=True, int8=plan.precision == "int8", profiles=[profile], calibrator=calibrator,
                           load_timing_cache=load_cache)


def build_engine(plan: EnginePlan, backend: SimpleNamespace | None = None,
                 check: Callable[[Path], Any] | None = None) -> Path:
    """Build the engine and write it, its provenance sidecar and its trtexec command line, all or none."""
    with atomic_path(plan.out_path) as staged:
        write_engine(plan, backend, staged, check)
    return plan.out_path


def write_engine(plan: EnginePlan, backend: SimpleNamespace | None, staged: Path,
                 check: Callable[[Path], Any] | None = None) -> Any:
    """Build the engine at `staged`, judge it with `check` (export's own gate check), then write its sidecar
    and trtexec command line beside it; returns the check's verdict."""
    backend = backend or import_tensorrt()
    pg = backend.pg
    network = pg.NetworkFromOnnxPath(str(plan.onnx_path))
    timing_cache = str(plan.timing_cache) if plan.timing_cache else None
    command = trtexec_command(plan)
    try:
        serialized = pg.EngineBytesFromNetwork(network, config=make_config(backend, plan),
                                               save_timing_cache=timing_cache)()
    except backend.error as exc:  # Polygraphy reports parser and builder failures as this one type
        serialized, detail = None, (str(exc).strip().splitlines() or ["no detail"])[0][:160]
    else:
        detail = "no engine returned"
    if serialized is None:
        raise TreefuseError(f"TensorRT could not build an engine from {plan.onnx_path} ({detail}); "
                            f"run `{command} --verbose` to see which layer failed")
    staged.write_bytes(bytes(serialized))
    verdict = check(staged) if check is not None else None
    record = sidecar(plan, backend, command, sha256_file(staged))
    if verdict is not None:
        record["verification"] = verdict
    document = sidecar_document(plan.out_path.name, sha256_file(staged), engine_metadata(plan), record)
    sidecar_path(staged).write_text(json.dumps(document, indent=2, sort_keys=True))
    staged.with_name(f"{staged.name}.trtexec.sh").write_text(command + "\n")
    return verdict


def engine_metadata(plan: EnginePlan) -> dict[str, str]:
    """The engine's artifact record (treefuse/artifact.py), carried over from the ONNX model it was built from."""
    from treefuse.artifact import ArtifactRecord, artifact_metadata

    source = ArtifactRecord.from_metadata(plan.onnx_metadata, format="onnx", path=plan.onnx_path, sha256="")
    return artifact_metadata(format="trt", precision=plan.precision, config=source.config,
                             source_sha256=source.source_sha256,
                             calibration_sha256=plan.calib_sha256 or source.calibration_sha256, target="tensorrt")


def sidecar(plan: EnginePlan, backend: SimpleNamespace, command: str, engine_sha256: str) -> dict[str, Any]:
    """What the engine is and where it came from, beside the engine."""
    return {
        "engine_sha256": engine_sha256,
        "onnx": str(plan.onnx_path), "onnx_sha256": sha256_file(plan.onnx_path),
        "precision": plan.precision, "int8_source": plan.int8_source,
        "calibration_set": str(plan.calib_dir) if plan.calib_dir else None,
        "calib_sha256": plan.calib_sha256,
        "calibration_cache": str(plan.calib_cache) if plan.calib_cache else None,
        "timing_cache": str(plan.timing_cache) if plan.timing_cache else None,
        "profile": {INPUT_NAME: plan.profile.to_dict()},
        "tensorrt_version": getattr(backend.trt, "__version__", "unknown"), "gpu": gpu_name(),
        "trtexec": command,
        "trtexec_strongly_typed": trtexec_strongly_typed(plan),
        "tensorrt_check": plan.tensorrt_check,
        "fp16_ranges": plan.fp16_ranges or "not measured: pass --check-fp16 CALIB_DIR to `treefuse export trt`",
        "source_sha256": plan.onnx_metadata.get("source_sha256"),
        "treefuse_config": plan.onnx_metadata.get("treefuse_config"),
        "provenance": provenance(onnx_provenance=plan.onnx_metadata.get("treefuse_provenance")),
    }


def gpu_name() -> str:
    """The GPU's name from nvidia-smi, or 'unknown'."""
    try:
        result = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                                text=True, timeout=20, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else "unknown"
