"""`treefuse train`: start, resume or benchmark a training run."""
from __future__ import annotations

import argparse
import json
import shlex
import sys

from treefuse.errors import TreefuseError

EXAMPLES = """\
examples:
  treefuse train --config quick --out runs/quick                  # shipped config: quick or paper
  treefuse train --config paper --set optim.steps=20000 --out runs/p1
  treefuse train --resume runs/p1                                 # continue where it stopped
  treefuse train --resume runs/p1 --chunk 2000                    # ... for 2000 more steps
  treefuse train --benchmark --json bench.json                    # it/s of FP32 vs bf16 and variants
  treefuse train --benchmark --set speed.compile=true             # ... plus torch.compile on the CPU
  treefuse train --init default --data pairs/ --val 41-50 --steps 2000 --out runs/cam1   # fine-tune
  treefuse train --init w.safetensors --data pairs/ --val val_pairs/ --out runs/cam2      # own weights
  treefuse train --card runs/cam1                                 # (re)write a finished run's MODEL_CARD.md

fine-tuning (--init/--data) starts from the shipped weights (`default`) or yours, trains on the
pairs in --data (rain/ + clean/, or another layout), validates on --val (another paired folder,
or pair numbers of --data left out of training) and writes RUN/MODEL_CARD.md when it finishes.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("--config", metavar="CFG", help="training config YAML, or a shipped name (quick, paper)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its newest checkpoint")
    parser.add_argument("--benchmark", action="store_true",
                        help="print training it/s of FP32 vs mixed precision and other variants (of --config)")
    parser.add_argument("--out", metavar="RUN_DIR", help="new run folder (with --config or --data)")
    parser.add_argument("--init", metavar="W", help="fine-tune from these weights ('default': the shipped ones)")
    parser.add_argument("--data", metavar="PAIRED_DIR", help="fine-tune on the pairs in this folder")
    parser.add_argument("--val", metavar="SPLIT", help="validation: a paired folder, or pair numbers of --data (41-50)")
    parser.add_argument("--steps", type=int, default=1000, metavar="N", help="fine-tuning steps (default 1000)")
    parser.add_argument("--card", metavar="RUN_DIR", help="write the model card of a finished run and exit")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. optim.steps=1000 (repeatable)")
    parser.add_argument("--chunk", type=int, metavar="N", help="stop (with a checkpoint) after N more steps")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--bench-steps", type=int, default=10, metavar="N", help="timed steps per variant (--benchmark)")
    parser.add_argument("--json", metavar="OUT", help="also write the --benchmark figures here (atomically)")


def run(args: argparse.Namespace) -> int:
    if args.card:
        from treefuse.train.model_card import write_model_card
        print(write_model_card(args.card))
        return 0
    finetune = bool(args.data or args.init or args.val)
    if finetune and (args.config or args.resume or args.benchmark):
        raise TreefuseError("--init/--data/--val fine-tune from weights; use them without --config, --resume or --benchmark")
    if finetune and not args.data:
        raise TreefuseError("fine-tuning needs --data PAIRED_DIR (the pairs to train on)")
    if args.resume and (args.config or args.benchmark):
        raise TreefuseError("--resume takes no --config or --benchmark: the run folder holds its config")
    if not (args.config or args.resume or args.benchmark or finetune):
        raise TreefuseError("say what to do: --config CFG --out RUN_DIR, --data PAIRED_DIR --out RUN_DIR, "
                            "--resume RUN_DIR, or --benchmark")
    if args.benchmark:
        from treefuse.train.benchmark import run_benchmark
        run_benchmark(args.config, args.overrides, steps=args.bench_steps, json_path=args.json)
        return 0
    from treefuse.train.session import resume_session, start_session, train
    from treefuse.train.train_config import load_train_config

    if args.chunk is not None and args.chunk < 1:
        raise TreefuseError(f"--chunk must be at least 1, got {args.chunk}")
    if (args.config or finetune) and not args.out:
        raise TreefuseError("--config and --data need --out RUN_DIR (a new folder for the run)")
    if finetune:
        from treefuse.train.finetune import finetune_config, score_start
        session = start_session(finetune_config(args.init, args.data, args.val, args.steps, args.overrides), args.out)
        if session.trainer.world.is_main:
            score_start(session)
    elif args.config:
        session = start_session(load_train_config(args.config, args.overrides), args.out)
    else:
        session = resume_session(args.resume, args.overrides)
    summary = train(session, stop_after=args.chunk, progress=not args.no_progress)
    if session.trainer.world.is_main:
        if summary["final_weights"]:
            from treefuse.train.model_card import write_model_card
            summary["model_card"] = str(write_model_card(session.run.path, "treefuse " + shlex.join(sys.argv[1:])))
        print(json.dumps({"run": str(session.run.path), **summary}, sort_keys=True, default=str, allow_nan=False))
    return 0
