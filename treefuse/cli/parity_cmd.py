"""`treefuse parity`: does a candidate backend reproduce the reference on real images?"""
from __future__ import annotations

import argparse

from treefuse.cli.args import add_backend_option, add_json_option

EXAMPLES = """\
examples:
  treefuse parity --ref torch:w.safetensors --cand onnx:m.onnx --images ../shared/data/rain100h-train50 --json p.json
  treefuse parity --ref onnx:fp32.onnx --cand onnx:int8.onnx --images pairs/ --min-psnr 30 --max-task-drop 0.1

--images is a folder of images, or a paired folder (rain/ and clean/ with the same names);
on a paired folder the task PSNR of both backends against ground truth is gated too.
exit 0: passed, 1: a gate failed, 2: bad input
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.runtimes.parity import DEFAULT_MAX_TASK_DROP_DB, DEFAULT_MIN_PSNR_DB

    parser.epilog = EXAMPLES
    add_backend_option(parser, "--ref", required=True)
    add_backend_option(parser, "--cand", required=True)
    parser.add_argument("--images", required=True, metavar="DIR", help="image folder or paired folder")
    parser.add_argument("--min-psnr", type=float, default=DEFAULT_MIN_PSNR_DB, metavar="DB",
                        help=f"minimum candidate-vs-reference output PSNR (default {DEFAULT_MIN_PSNR_DB})")
    parser.add_argument("--max-task-drop", type=float, default=DEFAULT_MAX_TASK_DROP_DB, metavar="DB",
                        help=f"largest allowed drop of task PSNR vs ground truth (default {DEFAULT_MAX_TASK_DROP_DB})")
    parser.add_argument("--y-channel", action="store_true", help="score on BT.601 luma instead of RGB")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per backend")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from treefuse.errors import GateFailed
    from treefuse.files import write_json_atomic
    from treefuse.provenance import provenance
    from treefuse.runtimes.device import device_fingerprint
    from treefuse.runtimes.parity import ParityGates, image_set, run_parity
    from treefuse.runtimes.registry import make_runner

    images = image_set(args.images)
    gates = ParityGates(args.min_psnr, args.max_task_drop, args.y_channel)
    with make_runner(args.ref, threads=args.threads) as reference, make_runner(args.cand, threads=args.threads) as candidate:
        result = run_parity(reference, candidate, images, gates, progress=True)
        result.update(reference=reference.describe(), candidate=candidate.describe())
    result.update(kind="treefuse-parity", images_dir=str(args.images), device=device_fingerprint(args.threads),
                  provenance=provenance())
    if args.json:
        write_json_atomic(args.json, result)
    _print_summary(result)
    if not result["passed"]:
        raise GateFailed("; ".join(result["failures"]))
    return 0


def _print_summary(result: dict) -> None:
    out = result["output_psnr_db"]
    line = f"output PSNR vs reference: min {out['min']:.2f} dB, mean {out['mean']:.2f} dB"
    if "task" in result:
        task = result["task"]
        line += (f" | task PSNR ref {task['ref_psnr_db']:.2f} dB, cand {task['cand_psnr_db']:.2f} dB, "
                 f"delta {task['delta_db']:+.3f} dB")
    print(line)
    print("PASSED" if result["passed"] else "FAILED")
