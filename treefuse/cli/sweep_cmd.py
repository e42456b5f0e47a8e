"""`treefuse sweep`: every backend at every resolution on this device, for `treefuse report`."""
from __future__ import annotations

import argparse

from treefuse.cli.args import add_backend_option, add_json_option, positive_int

EXAMPLES = """\
examples:
  treefuse sweep --backend torch:w.safetensors --backend onnx:m.onnx --sizes 256x256,512x512 --json cpu.json
  treefuse sweep --backend torch:w.safetensors --backend 'openvino:m.onnx?precision=bf16' \\
      --sizes 256x256,512x512,720x1280 --images ../shared/data/rain100h-train50 --json cpu.json

Per backend and size: latency percentiles (backends interleaved, so ratios are fair), throughput
and peak memory. With --images: output PSNR of every backend against the first, and task PSNR.
Backend options go after '?', comma-separated (quote them in the shell).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    add_backend_option(parser, action="append", required=True)
    parser.add_argument("--sizes", default="256x256,512x512", metavar="HxW,...",
                        help="comma-separated resolutions (default 256x256,512x512)")
    parser.add_argument("--images", metavar="DIR", help="image folder or paired folder for parity and task PSNR")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per backend and size (default 2)")
    parser.add_argument("--iters", type=int, default=10, help="timed calls per backend and size (default 10)")
    parser.add_argument("--threads", type=positive_int("--threads"), default=None, help="CPU threads per backend (default: library's)")
    parser.add_argument("--memory", choices=("shared", "own-process"), default="shared",
                        help="peak memory read in this process, which holds every backend (default), or in a fresh "
                             "process per backend and size: a figure for that engine alone (seconds more each)")
    add_json_option(parser, required=True)


def run(args: argparse.Namespace) -> int:
    from treefuse.cli.args import parse_size
    from treefuse.errors import TreefuseError
    from treefuse.files import check_output_path, write_json_atomic
    from treefuse.runtimes.measurements.memory import check_input_fits
    from treefuse.runtimes.measurements.parity import image_set
    from treefuse.runtimes.backends.registry import make_runner
    from treefuse.runtimes.measurements.sweep import run_sweep

    sizes = [parse_size(text) for text in args.sizes.split(",") if text.strip()]
    if not sizes:
        raise TreefuseError("--sizes names no size; give e.g. 256x256,512x512")
    if args.iters < 1 or args.warmup < 0:
        raise TreefuseError("--iters must be at least 1 and --warmup 0 or more")
    check_output_path(args.json)  # refuse a bad output before minutes of work
    images = image_set(args.images) if args.images else None
    for height, width in sizes:
        check_input_fits((1, 3, height, width), "--sizes")
    runners = [make_runner(spec, threads=args.threads) for spec in args.backend]
    try:
        for runner in runners:
            runner.activate()
        result = run_sweep(runners, sizes, args.warmup, args.iters, images, labels=args.backend, progress=True,
                           threads=args.threads, images_dir=args.images,
                           own_process_memory=args.memory == "own-process")
    finally:
        for runner in runners:
            runner.deactivate()
    write_json_atomic(args.json, result.to_json())
    _print_summary(result)
    return 0


def _print_summary(result) -> None:
    from treefuse.device import cpu_flags_text
    from treefuse.gates import gates_text

    print(f"CPU: {cpu_flags_text()}")
    for cell in result.cells:
        height, width = cell["size"]
        print(f"{cell['backend']:<48} {height}x{width:<6} p50 {cell['latency_ms']['p50']:9.2f} ms  "
              f"x{cell['ratio_to_first_p50']:.3f}  peak RSS {cell['memory']['peak_rss_mib']:.0f} MiB"
              + ("  unstable (p90/p50 > 1.5)" if cell.get("unstable") else ""))
    for row in result.parity:
        gates, psnr = row["gates"], row["output_psnr_db"]
        print(f"{row['backend']:<48} output PSNR vs first: min {psnr['min'] if psnr else float('nan'):.2f} dB  "
              f"{'passed' if row['passed'] else 'FAILED'} ({gates_text(gates)}, {gates['precision']} gates)")
