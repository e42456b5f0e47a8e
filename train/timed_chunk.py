"""Train until a deadline: start or resume a run, chunk by chunk, and write the weights it reached.

For machines lent by the minute (docs/gpu_session.md): each chunk ends on a whole checkpoint, the
next chunk starts only when the pace measured so far says it ends before the deadline, and the
weights of the step reached are written where asked, so a later call (there or here) resumes exactly.

    python -m treefuse.train.timed_chunk --config paper-gpu --out RUN --seconds 240 --weights W.safetensors
    python -m treefuse.train.timed_chunk --resume RUN --seconds 240 --weights W.safetensors
"""
from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from treefuse.errors import TreefuseError
from treefuse.files import write_json_atomic
from treefuse.train.session import Session, train, write_weights

FIRST_CHUNK_STEPS = 20  # measures the pace (and absorbs warm-up: a CUDA graph's capture, the first validation)
CHUNK_SECONDS = 30.0  # later chunks: about this long, so a slow validation overshoots little


def train_until(session: Session, seconds: float, first_chunk: int = FIRST_CHUNK_STEPS,
                chunk_seconds: float = CHUNK_SECONDS) -> dict[str, Any]:
    """Train chunks while the measured pace says the next one ends within `seconds`; returns a summary."""
    start = time.monotonic()
    step_at_start = session.trainer.step
    steps, summary = first_chunk, None
    while steps >= 1 and session.trainer.step < session.config.optim.steps:
        chunk_start, step_before = time.monotonic(), session.trainer.step
        summary = train(session, stop_after=steps, progress=False)
        pace = (session.trainer.step - step_before) / max(time.monotonic() - chunk_start, 1e-9)
        left = seconds - (time.monotonic() - start)
        steps = int(pace * min(chunk_seconds, left))
    wall = time.monotonic() - start
    trained = session.trainer.step - step_at_start
    return {"step": session.trainer.step, "steps": session.config.optim.steps, "steps_this_call": trained,
            "seconds_this_call": round(wall, 1), "it_per_s_this_call": round(trained / max(wall, 1e-9), 2),
            "loss": summary["loss"] if summary else None, "best": session.trainer.best, "run": str(session.run.path)}


def main(argv: list[str] | None = None) -> int:
    """The command line: start (--config/--out) or resume (--resume), train for --seconds, write --weights."""
    parser = argparse.ArgumentParser(prog="python -m treefuse.train.timed_chunk", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", metavar="CFG", help="training config YAML or shipped name (a new run)")
    parser.add_argument("--out", metavar="RUN_DIR", help="the new run's folder (with --config)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue this run from its newest checkpoint")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--seconds", type=float, required=True,
                        help="end within this many seconds of starting, data loading included")
    parser.add_argument("--first-chunk", type=int, default=FIRST_CHUNK_STEPS, metavar="N",
                        help=f"steps of the chunk that measures the pace (default {FIRST_CHUNK_STEPS})")
    parser.add_argument("--weights", metavar="W", help="write the weights of the step reached here")
    parser.add_argument("--json", metavar="OUT", help="write the summary here too")
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        return _run(args, started)
    except TreefuseError as exc:
        print(f"treefuse: error: {exc}", file=sys.stderr)
        return 2
    except Exception:  # the contract's exit 3: a bug, said on the first line, with its traceback
        print("treefuse: internal error (a bug in treefuse; please report it with this traceback):", file=sys.stderr)
        traceback.print_exc()
        return 3


def _run(args: argparse.Namespace, started: float) -> int:
    from treefuse.train.session import resume_session, start_session
    from treefuse.train.train_config import load_train_config

    if bool(args.resume) == bool(args.config) or (args.config and not args.out):
        raise TreefuseError("give --config CFG --out RUN_DIR for a new run, or --resume RUN_DIR; not both")
    if not args.seconds > 0 or args.first_chunk < 1:
        raise TreefuseError(f"--seconds must be positive and --first-chunk at least 1, got {args.seconds}, "
                            f"{args.first_chunk}")
    session = (resume_session(args.resume, args.overrides) if args.resume
               else start_session(load_train_config(args.config, args.overrides), args.out))
    summary = train_until(session, args.seconds - (time.monotonic() - started), args.first_chunk)
    if args.weights:
        write_weights(session, Path(args.weights), session.train_seconds, "chunk")
        summary["weights"] = args.weights
    if args.json:
        write_json_atomic(args.json, summary)
    print(json.dumps(summary, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
