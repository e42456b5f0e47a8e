"""`treefuse parity`: does a candidate backend reproduce the reference on real images?"""
from __future__ import annotations

import argparse

from treefuse.cli.args import add_backend_option, add_json_option, positive_int

EXAMPLES = """\
examples:
  treefuse parity --ref torch:w.safetensors --cand onnx:m.onnx --images ../shared/data/rain100h-train50 --json p.json
  treefuse parity --ref onnx:fp32.onnx --cand onnx:int8.onnx --images pairs/ --min-psnr 30 --max-task-drop 0.1
  treefuse parity --ref torch:w.safetensors --cand onnx:int8.onnx --images pairs/ --max-worst-task-drop 0.3

--images is a folder of images, or a paired folder (rain/ and clean/ with the same names);
on a paired folder the task PSNR of both backends against ground truth is gated too: its mean
drop, and the drop on the worst single image, which the output and the JSON name.
A candidate whose output holds NaN or Inf fails (exit 1); the JSON names the images.
Without --min-psnr/--max-task-drop/--max-worst-task-drop the gates are the defaults of the
candidate's precision (from its own metadata); the JSON records the gates used beside the verdict.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.gates import gates_table

    parser.epilog = EXAMPLES + "\n" + gates_table()
    add_backend_option(parser, "--ref", required=True)
    add_backend_option(parser, "--cand", required=True)
    parser.add_argument("--images", required=True, metavar="DIR", help="image folder or paired folder")
    parser.add_argument("--min-psnr", type=float, default=None, metavar="DB",
                        help="minimum candidate-vs-reference output PSNR (default: by the candidate's precision)")
    parser.add_argument("--max-task-drop", type=float, default=None, metavar="DB",
                        help="largest allowed drop of the mean task PSNR vs ground truth (default: by the candidate's "
                        "precision)")
    parser.add_argument("--max-worst-task-drop", type=float, default=None, metavar="DB",
                        help="largest allowed drop of task PSNR on any single image (default: by the candidate's "
                        "precision)")
    parser.add_argument("--y-channel", action="store_true", help="score on BT.601 luma instead of RGB")
    parser.add_argument("--threads", type=positive_int("--threads"), default=None, help="CPU threads per backend")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from treefuse.errors import GateFailed
    from treefuse.files import check_output_path, write_json_atomic
    from treefuse.gates import gates_for
    from treefuse.runtimes.measurements.parity import ParityGates, parity_result
    from treefuse.runtimes.backends.registry import make_runner

    if args.json:
        check_output_path(args.json)  # refuse a bad output before minutes of work
    with make_runner(args.ref, threads=args.threads) as reference, make_runner(args.cand, threads=args.threads) as candidate:
        gates = gates_for(candidate.compute_precision()).with_overrides(
            args.min_psnr, args.max_task_drop, args.max_worst_task_drop)
        result = parity_result(reference, candidate, args.images, ParityGates(gates, args.y_channel), args.threads,
                               progress=True)
    if args.json:
        write_json_atomic(args.json, result.to_json())
    _print_summary(result)
    if not result.passed:
        raise GateFailed("; ".join(result.failures))
    return 0


def _print_summary(result) -> None:
    from treefuse.gates import gates_text

    out, gates = result.output_psnr_db, result.gates
    line = (f"output PSNR vs reference: min {out['min']:.2f} dB, mean {out['mean']:.2f} dB" if out
            else "output PSNR vs reference: none (no finite output)")
    if result.task:
        task = result.task
        line += (f" | task PSNR ref {task['ref_psnr_db']:.2f} dB, cand {task['cand_psnr_db']:.2f} dB, "
                 f"delta {task['delta_db']:+.3f} dB (mean)")
    print(line)
    if result.worst_image:
        print(worst_image_text(result.worst_image))
    print(f"gates ({gates['precision']}): {gates_text(gates)}")
    print("PASSED" if result.passed else "FAILED: " + "; ".join(result.failures))


def worst_image_text(worst: dict) -> str:
    """One line naming the worst image and its figures."""
    if "task_delta_db" in worst:
        return (f"worst image: {worst['image']}: task PSNR ref {worst['ref_psnr_db']:.2f} dB, cand "
                f"{worst['cand_psnr_db']:.2f} dB, delta {worst['task_delta_db']:+.3f} dB; output PSNR vs reference "
                f"{worst['output_psnr_db']:.2f} dB")
    return f"worst image: {worst['image']}: output PSNR vs reference {worst['output_psnr_db']:.2f} dB"
