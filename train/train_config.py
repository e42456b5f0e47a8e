"""Training configuration: frozen dataclasses read from YAML, with dotted `--set` overrides."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError, one_line

CONFIG_DIR = Path(__file__).parent / "configs"
RAIN_PRESET_SUFFIX = "-rain"  # train/configs/*-rain.yaml are rain presets a chunk used (data.rain_preset), not configs
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# optim.activation_noise: one u8 step of each calibrated range, and the weight grid's levels it adds noise of (0: none)
NOISE_WEIGHT_LEVELS = {"calibrated-8bit": 0, "calibrated-8bit+weights-7bit": 64}
NOISE_KINDS = ("", *NOISE_WEIGHT_LEVELS)
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class DataConfig:
    """Where training and validation pairs come from and how patches are cut."""

    train_dirs: tuple[str, ...] = ("../shared/data/rain100h-train50",)
    train_range: str = "001-040"  # pair numbers used for training ("" = all)
    synthetic_dir: str = "../shared/data/clean"  # clean photos to rain on ("" = none)
    synthetic_fraction: float = 0.5  # share of each batch with synthetic rain
    heavy_fraction: float = 0.6  # share of synthetic patches with heavy (Rain100H-like) rain
    synthetic_pool: int = 0  # render rain once on this many photo crops and sample those (0: render per patch)
    synthetic_exclude: tuple[str, ...] = ()  # photos under synthetic_dir held out (paths relative to it)
    street_fraction: float = 0.0  # share of synthetic patches with street rain (veil, spray, night; rain_preset)
    rain_preset: str = "street"  # street-rain preset: a shipped name or a YAML file of ranges
    street_dir: str = ""  # clean road frames given street rain only ("" = none; needs a depth preset)
    street_exclude: tuple[str, ...] = ()  # frames under street_dir held out (data/street_split.py HELD_OUT)
    street_frame_fraction: float = 0.0  # share of street-rain patches drawn on street_dir frames
    street_long_side: int = 640  # street frames are scaled to this long side (the judge's scale)
    val_dir: str = "../shared/data/rain100h-train50"  # "" = no validation
    val_range: str = "041-050"
    val_name: str = "rain100h-train50:041-050"
    patch_size: int = 100
    batch_size: int = 10
    flips: bool = True


@dataclass(frozen=True)
class OptimConfig:
    """The paper's recipe: Adam, step-decayed learning rate, 0.4 MSE + 0.6 (1 - SSIM)."""

    steps: int = 300_000
    lr: float = 1e-3
    lr_milestones: tuple[int, ...] = (100_000, 200_000)
    lr_gamma: float = 0.1
    mse_weight: float = 0.4
    ssim_weight: float = 0.6
    seed: int = 0
    init_weights: str = ""  # start from these weights (same model config) instead of a random init
    # INT8-robust training (train/activation_noise.py): "calibrated-8bit" adds one uint8 step of uniform noise at
    # every activation the ONNX Runtime INT8 export quantizes, its range calibrated on noise_calibration;
    # "calibrated-8bit+weights-7bit" also one step of its 7-bit per-channel grid at every conv weight.
    activation_noise: str = ""
    noise_calibration: str = ""  # a treefuse calibration set (treefuse calib build), for activation_noise


@dataclass(frozen=True)
class SpeedConfig:
    """How the step runs; none of these change what is learned beyond float rounding."""

    device: str = "auto"
    precision: str = "auto"  # auto: bf16 autocast where the hardware has BF16 (AMX/AVX512-BF16 CPUs, GPUs), else fp32
    channels_last: bool = False
    fold: bool = False  # compute each first-level fuse folded into the dilated convs
    compile: bool = False
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    data_on_device: bool = False  # keep the uint8 images on the device and cut patches there (same batches)
    cuda_graph: bool = False  # capture the whole step (forward, backward, Adam) as one CUDA graph


@dataclass(frozen=True)
class RunConfig:
    """How often the run logs, validates and checkpoints."""

    log_every: int = 10
    validate_every: int = 1000
    checkpoint_every: int = 500
    keep_checkpoints: int = 3


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; the run folder keeps a copy."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def __post_init__(self) -> None:
        _validate(self)

    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainConfig":
        """Build from nested mappings, refusing unknown keys and wrongly typed values."""
        return _build(cls, data, "")


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _build(cls: type, data: Any, prefix: str) -> Any:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TreefuseError(f"config section '{prefix or 'top level'}' must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = prefix.rstrip(".") or "top level"
        raise TreefuseError(f"config: unknown key(s) {[prefix + k for k in unknown]} in {where}; "
                            f"known keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{prefix}{name}.")
        else:
            values[name] = _coerce(value, hint, prefix + name)
    return cls(**values)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TreefuseError(f"config: {key} must be a list, got {value!r}")
        item_type = typing.get_args(hint)[0]
        return tuple(_coerce(item, item_type, key) for item in value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads `1e-4` (no dot) as a string
        except ValueError:
            pass
    if hint is str and value is None:
        return ""
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # `--set data.val_range=041` arrives as a YAML number
    if not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise TreefuseError(f"config: {key} must be {hint.__name__}, got {value!r}")
    return value


def _validate(config: TrainConfig) -> None:
    data, optim, speed, run = config.data, config.optim, config.speed, config.run
    positive = {"data.patch_size": data.patch_size, "data.batch_size": data.batch_size, "optim.steps": optim.steps,
                "run.log_every": run.log_every, "run.validate_every": run.validate_every,
                "run.checkpoint_every": run.checkpoint_every, "run.keep_checkpoints": run.keep_checkpoints}
    for key, value in positive.items():
        if value < 1:
            raise TreefuseError(f"config: {key} must be at least 1, got {value}")
    for key, value in {"data.synthetic_fraction": data.synthetic_fraction,
                       "data.heavy_fraction": data.heavy_fraction, "data.street_fraction": data.street_fraction}.items():
        if not 0.0 <= value <= 1.0:
            raise TreefuseError(f"config: {key} must be between 0 and 1, got {value}")
    if not 0.0 <= data.street_frame_fraction <= 1.0:
        raise TreefuseError(f"config: data.street_frame_fraction must be between 0 and 1, got {data.street_frame_fraction}")
    if data.street_dir and (data.street_fraction <= 0.0 or data.synthetic_fraction <= 0.0):
        raise TreefuseError("config: data.street_dir needs data.street_fraction > 0 and data.synthetic_fraction > 0")
    if data.street_dir and data.synthetic_pool:
        raise TreefuseError("config: data.street_dir renders street rain live; set data.synthetic_pool=0")
    if data.synthetic_pool < 0:
        raise TreefuseError(f"config: data.synthetic_pool must be 0 or more, got {data.synthetic_pool}")
    if speed.threads < 0:
        raise TreefuseError(f"config: speed.threads must be 0 (torch's default) or more, got {speed.threads}")
    if speed.data_on_device and data.synthetic_fraction > 0.0 and data.synthetic_pool == 0:
        raise TreefuseError("config: speed.data_on_device needs pre-rendered synthetic rain; set data.synthetic_pool "
                            "(for example 2000) or data.synthetic_fraction=0")
    if not optim.lr > 0:
        raise TreefuseError(f"config: optim.lr must be positive, got {optim.lr}")
    if optim.activation_noise not in NOISE_KINDS:
        raise TreefuseError(f"config: optim.activation_noise must be one of {NOISE_KINDS}, got {optim.activation_noise!r}")
    if bool(optim.activation_noise) != bool(optim.noise_calibration):
        raise TreefuseError("config: optim.activation_noise and optim.noise_calibration go together; set both "
                            "(noise_calibration: a folder made by treefuse calib build) or neither")
    if data.patch_size < 11:
        raise TreefuseError(f"config: data.patch_size must be at least 11 (the SSIM window), got {data.patch_size}")
    if speed.precision not in PRECISIONS:
        raise TreefuseError(f"config: speed.precision must be one of {PRECISIONS}, got {speed.precision!r}")
    if speed.device not in DEVICES:
        raise TreefuseError(f"config: speed.device must be one of {DEVICES}, got {speed.device!r}")
    if not data.train_dirs and not data.synthetic_dir:
        raise TreefuseError("config: no training data; set data.train_dirs or data.synthetic_dir")
    if not data.train_dirs and data.synthetic_fraction < 1.0:
        raise TreefuseError("config: data.train_dirs is empty, so data.synthetic_fraction must be 1.0")
    if not data.synthetic_dir and data.synthetic_fraction > 0.0:
        raise TreefuseError("config: data.synthetic_dir is empty, so data.synthetic_fraction must be 0.0")


def set_dotted(data: dict[str, Any], assignment: str) -> None:
    """Apply one `section.key=value` override (value parsed as YAML) to nested mappings."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key.strip():
        raise TreefuseError(f"--set expects key=value (for example optim.steps=1000), got {assignment!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        raise TreefuseError(f"--set {assignment!r}: the value is not valid YAML") from None
    *parents, leaf = key.strip().split(".")
    node = data
    for part in parents:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise TreefuseError(f"--set {key}: '{part}' is not a config section")
        node = child
    node[leaf] = value


def load_train_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Read a training config: a YAML path (or a shipped name like `quick`) plus overrides."""
    data = read_yaml(resolve_config_path(path))
    for assignment in overrides:
        set_dotted(data, assignment)
    return TrainConfig.from_dict(data)


def resolve_config_path(path: str | Path) -> Path:
    """A config file path, or the shipped config of that name (`paper`, `quick`)."""
    candidate = Path(path)
    if candidate.is_file():
        return candidate
    shipped = CONFIG_DIR / f"{candidate.stem}.yaml"
    if candidate.suffix in ("", ".yaml") and candidate.parent == Path(".") and shipped.is_file():
        return shipped
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.endswith(RAIN_PRESET_SUFFIX))
    raise TreefuseError(f"config file not found: {path} (shipped configs: {names})")


def read_yaml(path: Path) -> dict[str, Any]:
    """A YAML mapping from a file, as a one-line error when it is not one."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise TreefuseError(f"cannot read config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise TreefuseError(f"config file {path} is not valid YAML: {one_line(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise TreefuseError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    return data
