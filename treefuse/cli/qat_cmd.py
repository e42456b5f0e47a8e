"""`treefuse qat`: quantization-aware fine-tuning for an INT8 target, resumable; export with `export onnx --qat`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from treefuse.errors import TreefuseError

EXAMPLES = """\
examples:
  treefuse qat --weights W --target onnx-int8 --data ../shared/data/rain100h-train50 --steps 1000 --out runs/qat1
  treefuse qat --resume runs/qat1                      # continue where it stopped
  treefuse export onnx --precision int8 --qat runs/qat1 --out m.int8.onnx

QAT starts from today's post-training INT8 export (same fold, rewrites and graph; minmax
scales from --calib) and fine-tunes the weights and every scale through fake quantization
that rounds and saturates as ONNX Runtime does. The loss is the paper's 0.4 MSE + 0.6 (1 - SSIM)
against the FP32 network's output (--distill) and the clean image (1 - distill), on real
pairs plus synthetic rain. --weight-bits 7 (default) keeps the weights within -64..64, which
x86 CPUs without VNNI (AVX2 only) compute without int16 saturation; 8 is for VNNI/AMX CPUs.
"""
DEFAULT_STEPS = 1000
TARGETS = {"onnx-int8": "ONNX Runtime QDQ INT8 (u8 per-tensor activations, s8 symmetric per-channel weights)"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("--weights", type=Path, help="FP32 treefuse weights to start from (default: the shipped ones)")
    parser.add_argument("--target", choices=sorted(TARGETS), default="onnx-int8", help="the INT8 runtime to train for")
    parser.add_argument("--data", type=Path, help="paired folder (rain/ + clean/) to fine-tune on")
    parser.add_argument("--calib", type=Path, help="calibration set for the starting scales (default: built from "
                        "--data's rain/, 16 crops of 256x256, seed 0, into OUT/calib)")
    parser.add_argument("--steps", type=int, help=f"total fine-tuning steps (default {DEFAULT_STEPS})")
    parser.add_argument("--out", type=Path, help="new run folder")
    parser.add_argument("--resume", type=Path, metavar="RUN_DIR", help="continue the run in RUN_DIR")
    parser.add_argument("--chunk", type=int, metavar="N", help="stop (with a checkpoint) after N more steps")
    parser.add_argument("--weight-bits", type=int, choices=(7, 8), default=7, help="weight levels -64..64 (7) or "
                        "-127..127 (8, VNNI/AMX CPUs only); default 7")
    parser.add_argument("--distill", type=float, default=1.0,
                        help="share of the loss against the FP32 output; the rest is against the clean image (default 1)")
    parser.add_argument("--lr", type=float, default=1e-4, help="weights' learning rate (default 1e-4; /10 at 2/3)")
    parser.add_argument("--scale-lr-factor", type=float, default=10.0, help="scales' learning rate / --lr (default 10)")
    parser.add_argument("--patch", type=int, default=64, help="patch side (default 64)")
    parser.add_argument("--batch", type=int, default=8, help="patches per step (default 8)")
    parser.add_argument("--synthetic-dir", default="../shared/data/clean", help="clean photos given synthetic rain")
    parser.add_argument("--synthetic-fraction", type=float, default=0.5, help="share of synthetic-rain patches")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--checkpoint-every", type=int, default=50, help="steps between checkpoints (default 50)")


def run(args: argparse.Namespace) -> int:
    from treefuse.export.onnx.qat_export import load_qat_module, read_settings
    from treefuse.train.qat import QatRecipe, QatTrainer, fine_tune, fp32_teacher, resume_at_newest
    from treefuse.train.run_dir import RunDir
    from treefuse.train.session import load_training_data

    if args.chunk is not None and args.chunk < 1:
        raise TreefuseError(f"--chunk must be at least 1, got {args.chunk}")
    if args.resume:
        if args.out or args.data or args.calib or args.weights or args.steps:
            raise TreefuseError("--resume takes only --chunk: the run folder holds its weights, data and settings")
        run_dir, config = RunDir.open(args.resume)
        data, _ = load_training_data(config)
        settings = read_settings(run_dir.path)
    else:
        run_dir, config, data, settings = _start(args)
    module, _ = load_qat_module(run_dir.path)
    recipe = QatRecipe(settings["distill"], settings["scale_lr_factor"])
    trainer = QatTrainer(module, fp32_teacher(settings["weights"]), config, data.sampler, module.weight_parameters(),
                         module.scale_parameters(), recipe)
    resume_at_newest(run_dir, trainer)
    summary = fine_tune(run_dir, trainer, stop_after=args.chunk)
    print(json.dumps({"run": str(run_dir.path), **summary}, sort_keys=True))
    if summary["step"] == summary["steps"]:
        print(f"export it: treefuse export onnx --precision int8 --qat {run_dir.path} --out MODEL.int8.onnx")
    return 0


def _start(args: argparse.Namespace):
    from treefuse.calib.store import load_calibration_set
    from treefuse.checkpoint import load_weights
    from treefuse.cli.args import default_weights
    from treefuse.export.onnx.qat_export import SETTINGS_NAME, make_qat_base
    from treefuse.files import sha256_file, write_json_atomic
    from treefuse.train.qat import qat_config
    from treefuse.train.run_dir import RunDir
    from treefuse.train.session import load_training_data

    if not args.out or not args.data:
        raise TreefuseError("a new QAT run needs --data PAIRED_DIR and --out RUN_DIR (or continue one with --resume)")
    args.steps = DEFAULT_STEPS if args.steps is None else args.steps
    if args.steps < 1 or not 0.0 <= args.distill <= 1.0:
        raise TreefuseError(f"--steps must be at least 1 and --distill between 0 and 1, got {args.steps}, {args.distill}")
    weights = args.weights or default_weights()
    config = qat_config(str(args.data), args.steps, patch_size=args.patch, batch_size=args.batch, lr=args.lr,
                        threads=args.threads, synthetic_dir=args.synthetic_dir,
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
        calib = args.calib or _default_calibration(args.data, run_dir.path / "calib")
        facts = make_qat_base(weights, calib, run_dir.path, args.weight_bits)
        settings = {"target": args.target, "weights": str(weights), "weights_sha256": sha256_file(weights),
                    "distill": args.distill, "scale_lr_factor": args.scale_lr_factor, **facts}
        write_json_atomic(run_dir.path / SETTINGS_NAME, settings)
    except BaseException:
        _remove_new_run(run_dir.path, existed)  # it held nothing before (RunDir.create refuses otherwise)
        raise
    print(f"QAT run {run_dir.path}: {TARGETS[args.target]}, {args.weight_bits}-bit weights, "
          f"starting from PTQ on {calib} (sha256 {facts['calib_sha256'][:12]})")
    return run_dir, config, data, settings


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
