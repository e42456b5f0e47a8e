"""What the observer-based QAT schemes (XNNPACK via PT2E, Core ML via coremltools) share.

Their fake-quantizers take ranges from observers rather than learning them, so a run starts from
post-training ranges (the observers fed the calibration set with rounding off, saved as
RUN/base/start.safetensors), trains the weights with the observers tracking the ranges, and
freezes them for the last part (the recipe). Both on/off switches are buffers of each
fake-quantizer, so checkpoints and learned.safetensors carry them and a resumed run or an export
sees exactly the state that was trained.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from treefuse.errors import TreefuseError
from treefuse.files import sha256_file
from treefuse.qat_run import BASE_DIR, LEARNED_NAME, START_NAME, load_into, read_learned, read_settings, read_state, \
    save_state

CALIBRATION_BATCH = 4


def set_observers(network: torch.nn.Module, enabled: bool) -> int:
    """Switch every fake-quantizer's range observer on or off; returns how many there are."""
    return _set_flag(network, "observer_enabled", enabled)


def set_fake_quant(network: torch.nn.Module, enabled: bool) -> int:
    """Switch every fake-quantizer's rounding on or off; returns how many there are."""
    return _set_flag(network, "fake_quant_enabled", enabled)


def _set_flag(network: torch.nn.Module, name: str, enabled: bool) -> int:
    count = 0
    for module in network.modules():
        flag = getattr(module, name, None)
        if isinstance(flag, torch.Tensor):
            flag.fill_(int(enabled))
            count += 1
    return count


def calibrate(network: torch.nn.Module, images: Any) -> None:
    """Observe ranges on N x 3 x H x W float images with rounding off, then turn rounding on: the PTQ start.

    The range is the whole set's minimum and maximum. The QAT observers average batch ranges with a
    1% constant, so fed batch by batch they would keep little more than the first batch's range and
    clip whatever a later image reaches beyond it (a bright sky, a high-contrast edge)."""
    set_fake_quant(network, False)
    set_observers(network, True)
    quantizers = [module for module in network.modules() if _is_range_observer(module)]
    observers = [quantizer.activation_post_process for quantizer in quantizers]
    constants = [observer.averaging_constant for observer in observers]
    envelope: list[tuple[torch.Tensor, torch.Tensor]] = []  # per observer: the lowest min and highest max seen
    try:
        for observer in observers:
            observer.averaging_constant = 1.0  # each batch's own range; the envelope keeps the extremes
        with torch.no_grad():
            for start in range(0, len(images), CALIBRATION_BATCH):
                network(torch.tensor(images[start:start + CALIBRATION_BATCH]))  # a copy: the set is read-only
                batch = [(observer.min_val.clone(), observer.max_val.clone()) for observer in observers]
                envelope = batch if not envelope else [(torch.minimum(low, new_low), torch.maximum(high, new_high))
                                                       for (low, high), (new_low, new_high) in zip(envelope, batch)]
        for quantizer, observer, (low, high) in zip(quantizers, observers, envelope):
            observer.min_val.copy_(low)
            observer.max_val.copy_(high)
            scale, zero_point = quantizer.calculate_qparams()
            quantizer.scale.copy_(scale)
            quantizer.zero_point.copy_(zero_point)
    finally:
        for observer, constant in zip(observers, constants):
            observer.averaging_constant = constant
    set_fake_quant(network, True)


def _is_range_observer(module: torch.nn.Module) -> bool:
    """A fake-quantizer whose observer keeps a running min/max (PT2E's and coremltools' QAT observers)."""
    observer = getattr(module, "activation_post_process", None)
    return all(hasattr(observer, name) for name in ("min_val", "max_val", "averaging_constant")) \
        and hasattr(module, "calculate_qparams") and hasattr(module, "scale")


def save_start(network: torch.nn.Module, run_dir: str | Path, calib_dir: str | Path, calib_sha256: str,
               method: str) -> dict[str, Any]:
    """RUN/base/start.safetensors from a calibrated network; returns facts for qat.json."""
    path = save_state(Path(run_dir) / BASE_DIR / START_NAME, network.state_dict(), {"calib_sha256": calib_sha256})
    return {"calib_sha256": calib_sha256, "calibration_set": str(Path(calib_dir).resolve()),
            "calibration_method": method, "start_sha256": sha256_file(path)}


def source_weights(run_dir: str | Path) -> Path:
    """The weights a run started from, refused when missing or changed since (the prepared graph is built from them)."""
    settings = read_settings(run_dir)
    weights = Path(settings["weights"])
    if not weights.is_file() or sha256_file(weights) != settings["weights_sha256"]:
        raise TreefuseError(f"QAT run {run_dir} started from {weights}, which is missing or changed since; "
                            "start a new run")
    return weights


def load_start(network: torch.nn.Module, run_dir: str | Path) -> None:
    """Load RUN/base/start.safetensors into a freshly prepared network (checked against qat.json's hash)."""
    start = Path(run_dir) / BASE_DIR / START_NAME
    state, _ = read_state(start, "start a new QAT run")
    if sha256_file(start) != read_settings(run_dir).get("start_sha256"):
        raise TreefuseError(f"{start} changed since the run started; start a new QAT run")
    load_into(network, state, start)


def load_learned(network: torch.nn.Module, run_dir: str | Path) -> dict[str, str]:
    """Load RUN/learned.safetensors, observers frozen (forward passes must not move learned ranges); its metadata."""
    state, metadata = read_learned(run_dir)
    load_into(network, state, Path(run_dir) / LEARNED_NAME)
    set_observers(network, False)
    return metadata
