"""`treefuse profile`: where one backend's time goes, from its runtime's own profiler."""
from __future__ import annotations

import argparse

from treefuse.cli.args import add_json_option, parse_size, positive_int

EXAMPLES = """\
examples:
  treefuse profile onnx:m.int8.onnx --size 512x512 --threads 2
  treefuse profile openvino:m.int8.onnx --size 512x512 --runs 5 --json ov.profile.json

Per-op times come from the runtime's own profiler (ONNX Runtime session profiling, OpenVINO
performance counters) on the graph it really runs (after its fusions), averaged over --runs
runs after one warm-up. They are grouped by op type, by layer (the folded model's names), and
into compute / quantize / dequantize / layout (transposes, reorders, concat, pad, slice), so
time spent moving or converting data shows apart from the convolutions.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("backend", metavar="KIND:PATH", help="backend and artifact, e.g. onnx:m.int8.onnx")
    parser.add_argument("--size", type=parse_size, default=(512, 512), metavar="HxW", help="input size (512x512)")
    parser.add_argument("--runs", type=positive_int("--runs"), default=3, help="profiled runs after a warm-up (3)")
    parser.add_argument("--threads", type=positive_int("--threads"), default=None, help="CPU threads")
    parser.add_argument("--top", type=positive_int("--top"), default=8, help="slowest nodes and layers to print (8)")
    add_json_option(parser)


def run(args: argparse.Namespace) -> int:
    from treefuse.device import cpu_flags_text
    from treefuse.files import check_output_path, write_json_atomic
    from treefuse.runtimes.backends.registry import make_runner
    from treefuse.runtimes.inspect.profile import profile_backend

    if args.json:
        check_output_path(args.json)
    with make_runner(args.backend, threads=args.threads) as runner:
        result = profile_backend(runner, args.size, args.runs, args.threads)
    if args.json:
        write_json_atomic(args.json, result.to_json())
    height, width = result.size
    print(f"{args.backend} at {height}x{width}, {result.profiler}, {result.runs} run(s), "
          f"threads {args.threads or 'default'}; CPU: {cpu_flags_text()}")
    print(f"total of profiled ops: {result.total_ms:.2f} ms per run; "
          + ", ".join(f"{group} {ms:.2f} ms ({ms / (result.total_ms or 1):.0%})" for group, ms in result.groups_ms.items()))
    _table("op type", result.op_types, "op_type", len(result.op_types))
    _table("layer", result.layers, "layer", args.top)
    print("slowest nodes:")
    for node in result.nodes[:args.top]:
        kernel = f"  [{node['kernel']}]" if node.get("kernel") else ""
        print(f"  {node['node']:<52} {node['op_type']:<16} {node['ms']:>9.3f} ms{kernel}")
    return 0


def _table(title: str, rows: list[dict], key: str, count: int) -> None:
    print(f"by {title}:")
    for row in rows[:count]:
        print(f"  {row[key]:<40} {row['ms']:>9.3f} ms {row['share']:>6.1%}  ({row['nodes']} node(s))")
