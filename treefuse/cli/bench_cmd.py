"""`treefuse bench`: latency of backends side by side, interleaved in one process."""
from __future__ import annotations

import argparse

from treefuse.cli.args import add_backend_option, add_json_option, positive_int

EXAMPLES = """\
example:
  treefuse bench --backend torch:w.safetensors --backend onnx:m.onnx --size 512x512 --iters 20 --json bench.json

Backends take turns every iteration, so their ratio (last column, vs the first backend)
is fair on a noisy machine; compare ratios, not absolute times across runs.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    add_backend_option(parser, action="append", required=True)
    parser.add_argument("--size", default="512x512", metavar="HxW", help="input height x width (default 512x512)")
    parser.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per backend first (default 2)")
    parser.add_argument("--iters", type=int, default=10, help="timed calls per backend (default 10)")
    parser.add_argument("--threads", type=positive_int("--threads"), default=None,
                        help="CPU threads per backend (default: library's)")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from treefuse.cli.args import parse_size
    from treefuse.errors import TreefuseError
    from treefuse.files import check_output_path, write_json_atomic
    from treefuse.device import cpu_flags_text
    from treefuse.runtimes.measurements.bench import bench_result, format_table
    from treefuse.runtimes.measurements.memory import check_input_fits
    from treefuse.runtimes.backends.registry import make_runner

    height, width = parse_size(args.size)
    for name in ("batch", "iters"):
        if getattr(args, name) < 1:
            raise TreefuseError(f"--{name} must be at least 1")
    if args.warmup < 0:
        raise TreefuseError("--warmup must be 0 or more")
    check_input_fits((args.batch, 3, height, width), "--size")
    if args.json:
        check_output_path(args.json)  # refuse a bad output before minutes of work
    runners = [make_runner(spec, threads=args.threads) for spec in args.backend]
    try:
        for runner in runners:
            runner.activate()
        result = bench_result(runners, (args.batch, 3, height, width), args.warmup, args.iters, args.threads,
                              progress=True)
    finally:
        for runner in runners:
            runner.deactivate()
    print(format_table(result.backends))
    print(f"CPU: {cpu_flags_text()}")
    if args.json:
        write_json_atomic(args.json, result.to_json())
    return 0
