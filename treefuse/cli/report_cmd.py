"""`treefuse report`: merge result files into report.md + report.html, or --verify a report's hash chain."""
from __future__ import annotations

import argparse
from pathlib import Path

EXAMPLES = """\
examples:
  treefuse report reports/*.json --out reports/
  treefuse report --verify reports/report.md            # or report.html, or result .json files
  treefuse report --verify arm.json --bundle bundles/onnx-int8   # a device result against its bundle

Takes any number of sweep, bench and parity result files (any devices). Each report opens on a
verdict table per device (gates, task-PSNR change, p50 at --size, size, memory) and which engine
to ship there: the fastest passing every gate, and the smallest; plots follow, provenance last. --verify re-hashes
every result and artifact named and checks each exported artifact's source weights are named
too; run it from the folder the results were made in (the repository root for reports/).
Two files giving the same cell (device, backend, size) are refused, naming both, unless
--prefer newest|first says which wins. Verdicts are printed with the thresholds they used.
--verify: exit 1 when something is missing or changed.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from treefuse.cli.args import parse_size

    parser.epilog = EXAMPLES
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="result .json files (or reports with --verify)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="folder for report.md and report.html")
    parser.add_argument("--prefer", choices=("newest", "first"), default=None,
                        help="which file wins when two give the same cell (default: refuse, naming both)")
    parser.add_argument("--size", type=parse_size, default=None, metavar="HxW",
                        help="the resolution the verdict table reads latency at (default 512x512 when measured, "
                             "else the largest)")
    parser.add_argument("--verify", action="store_true", help="re-hash everything the given reports/results name")
    parser.add_argument("--bundle", action="append", type=Path, default=[], metavar="DIR",
                        help="with --verify: the bundle a device result came from (repeatable; default: found by name)")
    parser.add_argument("--note", action="append", default=[], metavar="TEXT",
                        help="a sentence about the runs to print at the top (repeatable), e.g. that the CPU was shared")


def run(args: argparse.Namespace) -> int:
    from treefuse.errors import GateFailed, TreefuseError

    if args.verify:
        from treefuse.report.verify import verify

        checks = verify(args.files, tuple(args.bundle))
        for check in checks:
            print(f"{check.status:<8} {check.what:<9} {check.path}  {check.detail}")
        failed = [c for c in checks if c.failed]
        if failed:
            raise GateFailed(f"{len(failed)} of {len(checks)} checks failed (first: {failed[0].status} {failed[0].path})")
        print(f"verified: {len(checks)} checks passed")
        return 0
    if args.out is None:
        raise TreefuseError("pass --out DIR for the report (or --verify to check one)")
    from treefuse.files import check_output_folder, check_output_path

    check_output_folder(args.out)  # before the work: a file where the report folder goes
    for name in ("report.md", "report.html"):
        check_output_path(args.out / name)
    from treefuse.report.build import write_report

    md_path, html_path = write_report(args.files, args.out, tuple(args.note), args.prefer, args.size)
    print(f"wrote {md_path} and {html_path}")
    return 0
