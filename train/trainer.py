"""The trainer object: feed_data / optimize_parameters / validation / state / load_state."""
from __future__ import annotations

import base64
import contextlib
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from treefuse.checkpoint import load_weights
from treefuse.errors import TreefuseError
from treefuse.folding import fold
from treefuse.scoring import score_pairs
from treefuse.model import TreeFusionNet
from treefuse.train.datasets import ImagePair
from treefuse.train.ddp import World, wrap
from treefuse.train.device_patches import DevicePatchSampler
from treefuse.train.folded_forward import FoldedTraining
from treefuse.train.graphed_step import GraphedStep
from treefuse.train.losses import derain_loss
from treefuse.train.patches import PatchSampler
from treefuse.train.run_dir import pack_state, unpack_state
from treefuse.train.train_config import NOISE_WEIGHT_LEVELS, SpeedConfig, TrainConfig


@dataclass(frozen=True)
class TrainingData:
    """What a run trains and validates on, already decoded."""

    sampler: PatchSampler
    validation_pairs: list[ImagePair]
    manifest_sha256: str


def pick_device(name: str, world: World = World()) -> torch.device:
    """`auto` is CUDA when there is one, else the CPU; each torchrun process takes its local GPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TreefuseError("speed.device=cuda but no CUDA device is visible; use speed.device=auto or cpu")
    return torch.device("cuda", world.local_rank) if name == "cuda" else torch.device(name)


def resolve_precision(name: str, device: torch.device) -> str:
    """`auto` is bf16 where the hardware computes it natively, fp32 elsewhere."""
    if name == "fp16" and device.type != "cuda":
        raise TreefuseError("speed.precision=fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    if name != "auto":
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_bf16() else "fp32"


def cpu_has_bf16() -> bool:
    """Whether this CPU advertises native BF16 (AMX or AVX512-BF16); a bf16 autocast slows others down."""
    from treefuse.device import cpu_facts

    flags = set(cpu_facts()["isa_flags"])
    return "amx_bf16" in flags or "avx512_bf16" in flags


def learning_rate(config: TrainConfig, step: int) -> float:
    """The paper's schedule: lr divided by 1/gamma at each milestone already reached."""
    passed = sum(step >= milestone for milestone in config.optim.lr_milestones)
    return config.optim.lr * config.optim.lr_gamma ** passed


@torch.inference_mode()
def validate_model(model: TreeFusionNet, pairs: list[ImagePair], device: torch.device) -> dict[str, float]:
    """Mean Y-channel PSNR/SSIM of whole validation images (FP32, folded, outputs clipped)."""
    network = fold(model).to(device).to(memory_format=torch.contiguous_format)

    def infer(batch: np.ndarray) -> np.ndarray:
        return network(torch.from_numpy(batch).to(device)).float().cpu().numpy()

    scores = score_pairs(infer, ((str(i), pair.rain.astype(np.float32) / 255.0, pair.clean.astype(np.float32) / 255.0)
                                 for i, pair in enumerate(pairs)))
    return {"val_psnr_y_db": scores.mean("psnr_y_db"), "val_ssim_y": scores.mean("ssim_y")}


class Trainer:
    """Holds the model, optimizer and data of a run and advances it one step at a time."""

    def __init__(self, config: TrainConfig, data: TrainingData, device: torch.device,
                 world: World = World()) -> None:
        self.config, self.data, self.device, self.world = config, data, device, world
        speed = config.speed
        if speed.threads:
            torch.set_num_threads(speed.threads)
        torch.manual_seed(config.optim.seed)
        self.model = TreeFusionNet(config.model)
        if config.optim.init_weights:
            self.model.load_state_dict(_initial_weights(config).state_dict())
        self.model.to(device)
        self.memory_format = torch.channels_last if speed.channels_last else torch.contiguous_format
        self.model.to(memory_format=self.memory_format)
        self.network = wrap(_training_network(self.model, config, device), world, device)
        if speed.compile:
            self.network = torch.compile(self.network)
        self.precision = resolve_precision(speed.precision, device)
        _check_cuda_graph(speed, device, self.precision, world)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.optim.lr, capturable=speed.cuda_graph)
        self.scaler = torch.amp.GradScaler("cuda") if self.precision == "fp16" and device.type == "cuda" else None
        self.graphed = GraphedStep(self.network, self.optimizer, self._loss, self._autocast) if speed.cuda_graph else None
        self.step = 0
        self.best: dict[str, Any] = {"psnr_y_db": None, "ssim_y": None, "step": None}
        self.rainy = self.clean = None
        self.device_sampler = DevicePatchSampler(data.sampler, device) if speed.data_on_device else None

    def feed_data(self, step: int) -> None:
        """Cut this process's batch for `step` (on the host, or on the device) and place it there."""
        rank = self.world.rank if self.world.distributed else None
        if self.device_sampler is not None:
            rainy, clean = self.device_sampler.batch(step, rank)
        else:
            rainy, clean = (torch.from_numpy(b).to(self.device, non_blocking=True)
                            for b in self.data.sampler.batch(step, rank))
        self.rainy = rainy.contiguous(memory_format=self.memory_format)
        self.clean = clean.contiguous(memory_format=self.memory_format)

    def _autocast(self) -> contextlib.AbstractContextManager:
        precision = self.precision
        if precision == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if precision == "bf16" else torch.float16
        # Cached weight casts would outlive a CUDA graph capture; torch's graph docs require the cache off.
        return torch.autocast(self.device.type, dtype=dtype, cache_enabled=not self.config.speed.cuda_graph)

    def _loss(self, output: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        # The loss (and its SSIM) stays in float32: bf16 SSIM statistics lose too much.
        return derain_loss(output, clean, self.config.optim.mse_weight, self.config.optim.ssim_weight)

    def optimize_parameters(self) -> float:
        """One Adam step on the fed batch at this step's learning rate; returns the loss."""
        lr = learning_rate(self.config, self.step)
        if self.graphed is not None:
            loss = self.graphed(self.rainy, self.clean, lr)
            self.step += 1
            return float(loss.detach())
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.zero_grad(set_to_none=True)
        with self._autocast():
            output = self.network(self.rainy)
        loss = self._loss(output, self.clean)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()
            self.optimizer.step()
        self.step += 1
        return float(loss.detach())

    def validation(self) -> dict[str, Any]:
        """Mean Y-channel PSNR/SSIM on the validation pairs; marks (and records) a new best."""
        if not self.data.validation_pairs:
            return {}
        result = validate_model(self.model, self.data.validation_pairs, self.device)
        if self.best["psnr_y_db"] is None or result["val_psnr_y_db"] > self.best["psnr_y_db"]:
            self.best = {"psnr_y_db": result["val_psnr_y_db"], "ssim_y": result["val_ssim_y"], "step": self.step}
            result["best"] = True
        return result

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to continue bit-identically: tensors and a JSON-able record."""
        optim_state = self.optimizer.state_dict()
        tensors = pack_state(self.model.state_dict(), optim_state)
        record = {
            "optimizer_param_groups": optim_state["param_groups"],
            "rng": {"torch": _b64(torch.get_rng_state()), "numpy": _numpy_state(), "python": _python_state(),
                    "cuda": [_b64(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else []},
            "best": self.best,
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
        }
        return tensors, record

    def load_state(self, tensors: dict[str, torch.Tensor], record: dict[str, Any]) -> None:
        """Restore what `state()` returned; the step comes from `record['step']`."""
        model, slots = unpack_state(tensors)
        self.model.load_state_dict(model)
        # Whether Adam is capturable is this session's choice (speed.cuda_graph), not the checkpoint's.
        capturable = self.optimizer.param_groups[0]["capturable"]
        groups = [{**group, "capturable": capturable} for group in record["optimizer_param_groups"]]
        self.optimizer.load_state_dict({"state": slots, "param_groups": groups})
        rng = record["rng"]
        torch.set_rng_state(_unb64(rng["torch"]))
        np.random.set_state(tuple(rng["numpy"][:1]) + (np.array(rng["numpy"][1], dtype=np.uint32),)
                            + tuple(rng["numpy"][2:]))
        random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
        if rng["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all([_unb64(s) for s in rng["cuda"]])
        if self.scaler is not None and record.get("scaler"):
            self.scaler.load_state_dict(record["scaler"])
        self.best = dict(record["best"])
        self.step = int(record["step"])


def _check_cuda_graph(speed: SpeedConfig, device: torch.device, precision: str, world: World) -> None:
    """speed.cuda_graph captures the whole step; say which setting rules it out."""
    if not speed.cuda_graph:
        return
    if device.type != "cuda":
        raise TreefuseError("speed.cuda_graph needs a CUDA device; leave it off on the CPU")
    if precision == "fp16":
        raise TreefuseError("speed.cuda_graph cannot run fp16's GradScaler inside a captured step; use bf16")
    if speed.compile or world.distributed:
        raise TreefuseError("speed.cuda_graph is not supported with speed.compile or several processes; use one")


def _training_network(model: TreeFusionNet, config: TrainConfig, device: torch.device) -> torch.nn.Module:
    """What the step runs: the model, its folded pass, or (optim.activation_noise) the noisy INT8-shaped pass."""
    if config.optim.activation_noise:
        from treefuse.calib.store import load_calibration_set
        from treefuse.train.activation_noise import ActivationNoise, calibrated_steps

        # From the starting weights, once: a resumed run rebuilds the same steps before loading its checkpoint.
        images = load_calibration_set(config.optim.noise_calibration).images
        return ActivationNoise(model, calibrated_steps(model, images, device),
                               NOISE_WEIGHT_LEVELS[config.optim.activation_noise])
    return FoldedTraining(model) if config.speed.fold else model


def _initial_weights(config: TrainConfig) -> TreeFusionNet:
    loaded = load_weights(config.optim.init_weights)
    if loaded.config != config.model:
        raise TreefuseError(f"optim.init_weights {config.optim.init_weights} holds a model {loaded.config.to_dict()}, "
                            f"the config trains {config.model.to_dict()}")
    return loaded.model


def _b64(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode()


def _unb64(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def _numpy_state() -> list[Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]


def _python_state() -> list[Any]:
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]
