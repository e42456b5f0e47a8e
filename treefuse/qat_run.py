"""A quantization-aware training run folder: the one layout `treefuse qat` writes and every INT8 exporter reads.

    RUN/config.yaml, data_manifest.json, metrics.jsonl, checkpoints/   the training run (train/run_dir.py)
    RUN/qat.json               what the run is: target, scheme, source weights and their sha256, starting facts
    RUN/base/                  the target's starting point: ONNX targets keep fp32.onnx, rewritten.onnx and
                               ptq.int8.onnx; observer targets (XNNPACK, Core ML) keep start.safetensors
    RUN/calib/                 the calibration set built from --data when none was given
    RUN/learned.safetensors    the fake-quant network's state after the newest checkpoint (step, steps inside)

It lives in the core because train/ writes it and export/ reads it, and neither imports the other.
Everything here is safetensors or JSON: a run folder is never unpickled.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treefuse.errors import TreefuseError, one_line
from treefuse.files import atomic_path, sha256_file, write_json_atomic
from treefuse.formats import QUANT_SCHEMES, qat_exports, scheme_of_kind

SETTINGS_NAME = "qat.json"
LEARNED_NAME = "learned.safetensors"
BASE_DIR = "base"
CALIB_DIR = "calib"
START_NAME = "start.safetensors"  # observer schemes: the calibrated prepared network QAT starts from
FP32_ONNX, REWRITTEN_ONNX, PTQ_ONNX = "fp32.onnx", "rewritten.onnx", "ptq.int8.onnx"
REQUIRED_SETTINGS = ("target", "weights", "weights_sha256")
ALIASES_KEY = "treefuse.aliases"  # safetensors metadata: keys that name a tensor written under another key


@dataclass(frozen=True)
class QatRecipeDefaults:
    """A target's default recipe: the one that passed its gates on real pairs no QAT run saw (docs/quantization.md)."""

    steps: int
    distill: float  # share of the loss against the FP32 output
    scale_lr_factor: float  # learned-scale targets; 0 keeps the calibrated scales
    freeze_ranges_at: int | None  # observer targets: 0 keeps the calibrated ranges; None: at 2/3 of the steps


@dataclass(frozen=True)
class QatTarget:
    """One fake-quant scheme of the format table, its default recipe and the exports that take its runs."""

    name: str  # the --target of `treefuse qat`: a QUANT_SCHEMES key

    @property
    def scheme(self) -> str:
        """What is fake-quantized, as the runtime computes it."""
        return QUANT_SCHEMES[self.name].description

    @property
    def observers(self) -> bool:
        """Ranges from observers (XNNPACK, Core ML) rather than learned scales (ONNX)."""
        return QUANT_SCHEMES[self.name].observers

    @property
    def exports(self) -> tuple[str, ...]:
        """The `treefuse export` commands that take a run of this target, read off the format table."""
        return qat_exports(self.name)

    @property
    def defaults(self) -> QatRecipeDefaults:
        return RECIPE_DEFAULTS[self.name]


# Keyed by the INT8 scheme names of the format table. Each default recipe passed its gates on
# heavy-rain-sample5 and on ten Rain100H pairs its run never saw (docs/quantization.md). The ONNX
# targets keep their calibrated scales (learned ones shrank and clipped bright fresh frames); the
# observer targets keep the whole-set ranges and distil towards FP32 only.
RECIPE_DEFAULTS: dict[str, QatRecipeDefaults] = {
    "ort-qdq": QatRecipeDefaults(150, 1.0, 0.0, None),
    "trt-qdq": QatRecipeDefaults(300, 1.0, 0.0, None),
    "xnnpack-int8": QatRecipeDefaults(150, 1.0, 10.0, 0),
    "coreml-w8a8": QatRecipeDefaults(150, 1.0, 10.0, 0),
}
TARGETS: dict[str, QatTarget] = {name: QatTarget(name) for name in QUANT_SCHEMES}
# Other names a user gives a target: every format kind (its INT8 scheme), and names older runs' qat.json hold.
LEGACY_NAMES = {"onnx-int8": "ort-qdq", "tensorrt": "trt-qdq", "tensorrt-int8": "trt-qdq"}
ALIASES = {**scheme_of_kind(), **LEGACY_NAMES}


def target_named(name: str) -> QatTarget:
    """The target for a --target value (aliases included), or a one-line error listing them."""
    name = ALIASES.get(name, name)
    if name not in TARGETS:
        raise TreefuseError(f"unknown QAT target {name!r}; pick one of {', '.join(sorted(TARGETS))} "
                            f"(or a format: {', '.join(sorted(ALIASES))})")
    return TARGETS[name]


def qat_command(target: str, weights: str = "W", data: str = "PAIRS") -> str:
    """The command that trains a run for `target` (what gate-miss advice names)."""
    return f"treefuse qat --weights {weights} --data {data} --target {target} --out RUN"


def read_settings(run_dir: str | Path) -> dict[str, Any]:
    """RUN/qat.json, checked; a missing or unreadable one is a one-line error naming the fix."""
    path = Path(run_dir) / SETTINGS_NAME
    if not Path(run_dir).is_dir():
        raise TreefuseError(f"QAT run {run_dir} does not exist; make one with `{qat_command('T')}`")
    if not path.is_file():
        raise TreefuseError(f"{run_dir} is not a QAT run (no {SETTINGS_NAME}); make one with `{qat_command('T')}`")
    try:
        settings = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TreefuseError(f"{path} is unreadable ({one_line(exc)}); start a new QAT run") from None
    missing = [key for key in REQUIRED_SETTINGS if not isinstance(settings, dict) or key not in settings]
    if missing:
        raise TreefuseError(f"{path} lacks {', '.join(missing)}; start a new QAT run")
    target_named(str(settings["target"]))
    return settings


def recipe_settings(run_dir: str | Path) -> tuple[float, float, int | None]:
    """(distill, scale_lr_factor, freeze_observers_step) of a run, checked: a resumed run trains with them."""
    settings = read_settings(run_dir)
    distill, factor = settings.get("distill"), settings.get("scale_lr_factor")
    freeze = settings.get("freeze_observers_step")
    number = (int, float)
    if not (isinstance(distill, number) and not isinstance(distill, bool) and 0 <= distill <= 1
            and isinstance(factor, number) and not isinstance(factor, bool) and factor >= 0
            and (freeze is None or (isinstance(freeze, int) and not isinstance(freeze, bool) and freeze >= 0))):
        raise TreefuseError(f"{Path(run_dir) / SETTINGS_NAME} has a bad recipe (distill {distill!r}, "
                            f"scale_lr_factor {factor!r}, freeze_observers_step {freeze!r}); start a new QAT run")
    return float(distill), float(factor), freeze


def write_settings(run_dir: str | Path, settings: dict[str, Any]) -> None:
    """Write RUN/qat.json atomically (the target is checked first)."""
    target_named(str(settings["target"]))
    write_json_atomic(Path(run_dir) / SETTINGS_NAME, settings)


def require_target(run_dir: str | Path, wanted: str) -> dict[str, Any]:
    """The run's settings if it was trained for `wanted`, else a one-line error naming the right command."""
    settings = read_settings(run_dir)
    if target_named(settings["target"]).name != target_named(wanted).name:
        raise TreefuseError(f"QAT run {run_dir} was trained for {settings['target']}, not {wanted}; "
                            f"train one with `{qat_command(wanted)}`")
    return settings


def save_learned(run_dir: str | Path, state: dict[str, Any], step: int, steps: int) -> Path:
    """Write the network's state as RUN/learned.safetensors (atomic), with its step."""
    return save_state(Path(run_dir) / LEARNED_NAME, state, {"step": str(step), "steps": str(steps)})


def unique_tensors(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """A state dict without repeats, and the repeated keys with the key they repeat.

    Quantizers share one fake-quantizer between tensors that must keep one scale (a concat's inputs),
    so a state dict names the same tensor under several keys, which safetensors refuses to write.
    """
    kept: dict[tuple[Any, ...], str] = {}
    tensors: dict[str, Any] = {}
    aliases: dict[str, str] = {}
    for key, value in state.items():
        identity = (value.untyped_storage().data_ptr(), value.storage_offset(), tuple(value.shape), value.dtype)
        if value.numel() and identity in kept:
            aliases[key] = kept[identity]
        else:
            kept[identity] = key
            tensors[key] = value
    return tensors, aliases


def with_aliases(tensors: dict[str, Any], aliases: dict[str, str]) -> dict[str, Any]:
    """`unique_tensors` undone: every repeated key back, naming its tensor."""
    return {**tensors, **{key: tensors[source] for key, source in aliases.items()}}


def save_state(path: Path, state: dict[str, Any], metadata: dict[str, str]) -> Path:
    """A module state dict as safetensors, atomically (repeats written once, named in the metadata)."""
    from safetensors.torch import save_file

    tensors, aliases = unique_tensors(state)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    with atomic_path(path) as staged:
        save_file(tensors, str(staged), metadata={**metadata, ALIASES_KEY: json.dumps(aliases, sort_keys=True)})
    return path


def read_state(path: Path, what: str) -> tuple[dict[str, Any], dict[str, str]]:
    """A safetensors state and its metadata, or a one-line error naming `what` to do."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.is_file():
        raise TreefuseError(f"{path} is missing; {what}")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
        return with_aliases(load_file(str(path)), json.loads(metadata.pop(ALIASES_KEY, "{}"))), metadata
    except Exception as exc:  # safetensors raises several types for a damaged file
        raise TreefuseError(f"{path} is unreadable ({one_line(exc)[:120]}); {what}") from None


def read_learned(run_dir: str | Path) -> tuple[dict[str, Any], dict[str, str]]:
    """RUN/learned.safetensors and its metadata (step, steps)."""
    return read_state(Path(run_dir) / LEARNED_NAME, f"run `treefuse qat --resume {run_dir}` first")


def load_into(module: Any, state: dict[str, Any], path: Path) -> None:
    """Load a state into a module; a mismatch is the run's fault (changed or foreign file), one line."""
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise TreefuseError(f"{path} does not match the run's fake-quant network ({one_line(exc)[:160]}); "
                            "start a new QAT run") from None


def learned_record(run_dir: str | Path, settings: dict[str, Any], metadata: dict[str, str]) -> dict[str, Any]:
    """What every QAT export writes into its provenance: the run, its step and the hashes it started from."""
    return {"run": str(run_dir), "target": settings["target"], "step": int(metadata.get("step", 0)),
            "steps": int(metadata.get("steps", 0)), "learned_sha256": sha256_file(Path(run_dir) / LEARNED_NAME),
            "weights_sha256": settings.get("weights_sha256"), "distill": settings.get("distill"),
            "calib_sha256": settings.get("calib_sha256"), "calibration_set": settings.get("calibration_set")}


def miss_advice(run_dir: str | Path, export_command: str) -> str:
    """What to try when an export of a QAT run misses its gate: more fine-tuning, then judging where it matters."""
    settings = read_settings(run_dir)
    try:
        steps = int(read_state(Path(run_dir) / LEARNED_NAME, "")[1].get("steps", 0))
    except TreefuseError:
        steps = 0
    target, more = target_named(settings["target"]).name, max(2 * steps, 1000)
    from treefuse.route_costs import qat_text  # the recorded cost: a newcomer should not guess an hour

    return (f"fine-tune longer from the same weights ({qat_text(more)}): `treefuse qat --weights {settings['weights']} "
            f"--data TRAIN_PAIRS --target {target} --steps {more} --out RUN2` (pairs the gate does not judge), then "
            f"`{export_command} --qat RUN2 --out MODEL`; judge it on the camera's own pairs with --paired-images PAIRS")
