"""`treefuse qat`: quantization-aware fine-tuning for one INT8 target, resumable; its exporters take `--qat RUN`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from treefuse.errors import TreefuseError

DEFAULT_SYNTHETIC_DIR = Path("../shared/data/clean")

EXAMPLES = """\
examples:
  treefuse qat --weights W --data ../shared/data/rain100h-train50 --target ort-qdq --out runs/qat1   # its recipe, below
  treefuse qat --weights W --data PAIRS --target xnnpack-int8 --out runs/qat-xnn      # ExecuTorch + LiteRT
  treefuse qat --resume runs/qat1                      # continue where it stopped
  treefuse export onnx --precision int8 --qat runs/qat1 --out m.int8.onnx

targets (one fake-quant scheme each; a format's name picks its scheme):
  ort-qdq       ONNX Runtime QDQ (onnx, openvino): u8 activations, s8 per-channel weights, int32 biases
  trt-qdq       TensorRT explicit QDQ (onnx --target tensorrt): s8 symmetric activations, zero point 0
  xnnpack-int8  XNNPACK via PT2E QAT (executorch, litert): s8 activations, s8 per-channel weights
  coreml-w8a8   Core ML w8a8 via coremltools' LinearQuantizer (coreml)

Every run starts from that target's post-training INT8 (minmax ranges from --calib) and fine-tunes
the weights through fake quantization that rounds and saturates as the runtime does. ONNX targets
can learn every scale (LSQ, --scale-lr-factor); XNNPACK and Core ML take ranges from observers
(--freeze-ranges-at 0 keeps the calibrated full-frame ranges: patches never see a frame's extremes).
The loss is the paper's 0.4 MSE + 0.6 (1 - SSIM) against the FP32 network's output (--distill)
and the clean image (1 - distill), on real pairs plus synthetic rain. For ort-qdq,
--weight-bits 7 (default) keeps the weights within -64..64, which x86 CPUs without VNNI (AVX2 only)
compute without int16 saturation; 8 is for VNNI/AMX CPUs (and the only choice for TensorRT).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.cli.args import weights_path
    from treefuse.qat_run import ALIASES, TARGETS

    parser.epilog = EXAMPLES + _recipe_table(TARGETS)
    parser.add_argument("--weights", type=weights_path,
                        help="FP32 treefuse weights to start from (`default` or omitted: the shipped ones)")
    parser.add_argument("--target", choices=sorted(TARGETS) + sorted(ALIASES), default="ort-qdq",
                        help="the INT8 scheme (or a format that uses it) to train for (default ort-qdq)")
    parser.add_argument("--data", type=Path, help="paired folder (rain/ + clean/) to fine-tune on")
    parser.add_argument("--calib", type=Path, help="calibration set for the starting ranges (default: built from "
                        "--data's rain/, 16 crops of 256x256, seed 0, into OUT/calib)")
    parser.add_argument("--steps", type=int, help="total fine-tuning steps (default: the target's recipe, below)")
    parser.add_argument("--out", type=Path, help="new run folder")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    parser.add_argument("--chunk", type=int, metavar="N", help="stop (with a checkpoint) after N more steps")
    parser.add_argument("--weight-bits", type=int, choices=(7, 8), help="ONNX targets: weight levels -64..64 (7) "
                        "or -127..127 (8); default 7 for ort-qdq (AVX2-safe), 8 for trt-qdq")
    parser.add_argument("--distill", type=float,
                        help="share of the loss against the FP32 output; the rest is against the clean image")
    parser.add_argument("--freeze-ranges-at", type=int, metavar="STEP",
                        help="xnnpack-int8, coreml-w8a8: the step at which the observers stop moving the ranges "
                        "(0: keep the calibrated ranges)")
    parser.add_argument("--lr", type=float, default=1e-4, help="weights' learning rate (default 1e-4; /10 at 2/3)")
    parser.add_argument("--scale-lr-factor", type=float, help="ONNX targets: scales' learning rate / --lr "
                        "(0: keep the calibrated scales)")
    parser.add_argument("--patch", type=int, default=64, help="patch side (default 64)")
    parser.add_argument("--batch", type=int, default=8, help="patches per step (default 8)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patch sampler (default 0)")
    parser.add_argument("--synthetic-dir", type=Path, default=None, metavar="CLEAN_PHOTOS",
                        help=f"clean photos given synthetic rain (default: {DEFAULT_SYNTHETIC_DIR}, from the current "
                        "folder or beside the repository)")
    parser.add_argument("--synthetic-fraction", type=float, default=0.5, help="share of synthetic-rain patches")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (default 50)")


def run(args: argparse.Namespace) -> int:
    from treefuse.qat_run import TARGETS, read_settings, recipe_settings, target_named
    from treefuse.train.qat import QatRecipe, QatTrainer, fine_tune, fp32_teacher, resume_at_newest
    from treefuse.cli.qat_schemes import open_network
    from treefuse.train.run_dir import RunDir
    from treefuse.train.session import load_training_data

    if args.chunk is not None and args.chunk < 1:
        raise TreefuseError(f"--chunk must be at least 1, got {args.chunk}")
    if args.resume:
        if args.out or args.data or args.calib or args.weights or args.steps or args.weight_bits \
                or any(value is not None for value in (args.freeze_ranges_at, args.distill, args.scale_lr_factor)):
            raise TreefuseError("--resume takes only --chunk: the run folder holds its weights, data and settings")
        settings = read_settings(args.resume)
        recipe_settings(args.resume)  # a damaged recipe fails before the data loads
        run_dir, config = RunDir.open(args.resume)
        data, _ = load_training_data(config)
    else:
        run_dir, config, data, settings = _start(args)
    target = target_named(settings["target"]).name
    network, weights, scales, observers = open_network(target, run_dir.path)
    recipe = QatRecipe(*recipe_settings(run_dir.path))
    trainer = QatTrainer(network, fp32_teacher(settings["weights"]), config, data.sampler, weights, scales, recipe,
                         observers)
    resume_at_newest(run_dir, trainer)
    summary = fine_tune(run_dir, trainer, stop_after=args.chunk, progress=True)  # a bar on a terminal only
    print(json.dumps({"run": str(run_dir.path), "target": target, **summary}, sort_keys=True))
    if summary["step"] == summary["steps"]:
        for export in TARGETS[target].exports:
            print(f"export it: treefuse {export} --qat {run_dir.path} --out MODEL")
    return 0


def _start(args: argparse.Namespace) -> tuple[Any, Any, Any, dict[str, Any]]:
    import torch

    from treefuse.calib.store import load_calibration_set
    from treefuse.checkpoint import load_weights
    from treefuse.cli.args import default_weights
    from treefuse.files import sha256_file
    from treefuse.qat_run import CALIB_DIR, target_named, write_settings
    from treefuse.train.qat import qat_config
    from treefuse.cli.qat_schemes import start_scheme
    from treefuse.train.run_dir import RunDir
    from treefuse.train.session import load_training_data

    if not args.out or not args.data:
        raise TreefuseError("a new QAT run needs --data PAIRED_DIR and --out RUN_DIR (or continue one with --resume)")
    target = target_named(args.target)
    _apply_defaults(args, target)
    if args.steps < 1 or not 0.0 <= args.distill <= 1.0:
        raise TreefuseError(f"--steps must be at least 1 and --distill between 0 and 1, got {args.steps}, {args.distill}")
    weight_bits = _weight_bits(target.name, args.weight_bits)
    freeze_at = _freeze_ranges_at(args.freeze_ranges_at, args.steps)
    weights = args.weights or default_weights()
    config = qat_config(str(args.data), args.steps, patch_size=args.patch, batch_size=args.batch, lr=args.lr,
                        threads=args.threads, seed=args.seed, synthetic_dir=_synthetic_dir(args),
                        synthetic_fraction=args.synthetic_fraction, checkpoint_every=args.checkpoint_every,
                        init_weights=str(weights))
    load_weights(weights)  # bad weights, data or calibration fail before the folder is made
    if args.calib:
        load_calibration_set(args.calib)
    data, record = load_training_data(config)
    existed = args.out.exists()
    run_dir = RunDir.create(args.out, config)
    try:
        run_dir.write_manifest(record, data.manifest_sha256)
        calib = args.calib or _default_calibration(args.data, run_dir.path / CALIB_DIR)
        if config.speed.threads:  # the starting ranges too: float sums differ across thread counts
            torch.set_num_threads(config.speed.threads)
        facts = start_scheme(target.name, weights, calib, run_dir.path, weight_bits)
        settings = {"target": target.name, "scheme": target.scheme, "weights": str(Path(weights).resolve()),
                    "weights_sha256": sha256_file(weights), "distill": args.distill,
                    "scale_lr_factor": args.scale_lr_factor, "seed": args.seed,
                    "freeze_observers_step": config.optim.lr_milestones[0] if freeze_at is None else freeze_at,
                    **facts}
        write_settings(run_dir.path, settings)
    except BaseException:
        _remove_new_run(run_dir.path, existed)  # it held nothing before (RunDir.create refuses otherwise)
        raise
    print(f"QAT run {run_dir.path}: {target.scheme}; starting from post-training INT8 on {calib} "
          f"(sha256 {facts['calib_sha256'][:12]})")
    return run_dir, config, data, settings


def _synthetic_dir(args: argparse.Namespace) -> str:
    """The clean photos to rain on, as an absolute path (a resumed run finds them from any folder)."""
    if not args.synthetic_fraction:
        return ""
    if args.synthetic_dir is not None:
        if not args.synthetic_dir.is_dir():
            raise TreefuseError(f"--synthetic-dir {args.synthetic_dir} is not a folder; pass a folder of clean photos, "
                                "or --synthetic-fraction 0 to fine-tune on --data alone")
        return str(args.synthetic_dir.resolve())
    import treefuse

    beside_repository = Path(treefuse.__file__).resolve().parents[1] / DEFAULT_SYNTHETIC_DIR
    for folder in (DEFAULT_SYNTHETIC_DIR, beside_repository):
        if folder.is_dir():
            return str(folder.resolve())
    raise TreefuseError(f"--synthetic-dir: no clean photos at the default {DEFAULT_SYNTHETIC_DIR} (from here or beside "
                        "the repository); pass --synthetic-dir CLEAN_PHOTOS, or --synthetic-fraction 0 to fine-tune "
                        "on --data alone")


def _weight_bits(target: str, asked: int | None) -> int | None:
    """ONNX Runtime: 7 by default (AVX2-safe); TensorRT: 8 only; the other schemes fix their own (None)."""
    defaults = {"ort-qdq": 7, "trt-qdq": 8}
    if target not in defaults:
        if asked is not None:
            raise TreefuseError(f"--weight-bits applies to ort-qdq and trt-qdq only; {target} fixes its own "
                                "(8-bit weights); drop it")
        return None
    if target == "trt-qdq" and asked not in (None, 8):
        raise TreefuseError("TensorRT's INT8 weights are 8-bit: drop --weight-bits or pass 8")
    return defaults[target] if asked is None else asked


def _recipe_table(targets: dict[str, Any]) -> str:
    """The epilog's table of each target's default recipe, from the target table itself."""
    lines = ["", "default recipe per target (each passed its gates on real pairs no run saw; docs/quantization.md):"]
    for target in targets.values():
        d = target.defaults
        kept = (f"ranges kept from step {d.freeze_ranges_at}" if d.freeze_ranges_at is not None else
                "ranges frozen at 2/3") if target.observers else \
            ("calibrated scales kept" if d.scale_lr_factor == 0 else f"scales learned at {d.scale_lr_factor:g}x lr")
        lines.append(f"  {target.name:13s} --steps {d.steps}, --distill {d.distill:g}, {kept}")
    return "\n".join(lines) + "\n"


def _apply_defaults(args: argparse.Namespace, target: Any) -> None:
    """What the user left out comes from the target's recipe (treefuse/qat_run.py, TARGETS)."""
    if args.freeze_ranges_at is not None and not target.observers:
        raise TreefuseError(f"--freeze-ranges-at applies to xnnpack-int8 and coreml-w8a8 only; {target.name} learns "
                            "its scales: drop it")
    defaults = target.defaults
    args.steps = defaults.steps if args.steps is None else args.steps
    args.distill = defaults.distill if args.distill is None else args.distill
    args.scale_lr_factor = defaults.scale_lr_factor if args.scale_lr_factor is None else args.scale_lr_factor
    if args.freeze_ranges_at is None and target.observers:
        args.freeze_ranges_at = defaults.freeze_ranges_at


def _freeze_ranges_at(asked: int | None, steps: int) -> int | None:
    """The observer schemes' freeze step, checked (None: at the learning-rate drop)."""
    if asked is None:
        return None
    if not 0 <= asked <= steps:
        raise TreefuseError(f"--freeze-ranges-at must be between 0 and --steps ({steps}), got {asked}")
    return asked


def _default_calibration(data_dir: Path, out: Path) -> Path:
    from treefuse.calib.build import build_calibration_set, source_images

    count = min(16, len(source_images(data_dir / "rain")))
    return build_calibration_set(data_dir / "rain", out, count=count, size_hw=(256, 256), seed=0)


def _remove_new_run(path: Path, existed: bool) -> None:
    import shutil

    if existed:
        for child in path.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    else:
        shutil.rmtree(path, ignore_errors=True)
