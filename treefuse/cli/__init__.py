"""The `treefuse` command: a thin layer that parses arguments and calls the stages.

Each command lives in its own module here with `add_arguments(parser)` and
`run(args) -> exit code`; modules are imported only when their command runs.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import os
import sys
import traceback
from typing import NoReturn

from treefuse.errors import GateFailed, TreefuseError, one_line

# name -> (module, one-line help). The order is the pipeline's order.
COMMANDS: dict[str, tuple[str, str]] = {
    "synth": ("treefuse.cli.synth_cmd", "render synthetic street rain onto clean frames: rain/ + clean/ training pairs"),
    "train": ("treefuse.cli.train_cmd", "train the model on paired or synthetic-rain data (resumable)"),
    "blend": ("treefuse.cli.blend_cmd", "mix fine-tuned weights back toward their base (WiSE-FT), no training"),
    "evaluate": ("treefuse.cli.evaluate_cmd", "PSNR/SSIM of a backend against ground truth on a paired folder"),
    "qat": ("treefuse.cli.qat_cmd", "quantization-aware fine-tuning when post-training INT8 misses its gate (resumable)"),
    "export": ("treefuse.cli.export_cmd", "convert weights to a deployable artifact, checked by its own gate "
               "(one FORMAT per exportable row of the format table)"),
    "calib": ("treefuse.cli.calib_cmd", "build, verify and inspect INT8 calibration sets"),
    "check": ("treefuse.cli.check_cmd", "check an ONNX model against a runtime's rules before building (tensorrt)"),
    "parity": ("treefuse.cli.parity_cmd", "check a candidate backend's output against a reference backend"),
    "diff": ("treefuse.cli.diff_cmd", "compare two backends layer by layer: where a candidate first goes wrong"),
    "bench": ("treefuse.cli.bench_cmd", "measure latency of several backends side by side"),
    "profile": ("treefuse.cli.profile_cmd", "where one backend's time goes, from its runtime's own profiler"),
    "sweep": ("treefuse.cli.sweep_cmd", "latency and parity of backends across resolutions, for a device report"),
    "benchmark": ("treefuse.cli.benchmark_cmd", "export every format x precision, check parity, time all side by side"),
    "pack": ("treefuse.cli.pack_cmd", "a device bundle: artifact, golden inputs/outputs, gates; runs without torch"),
    "report": ("treefuse.cli.report_cmd", "merge result files into a Markdown and HTML report"),
    "derain": ("treefuse.cli.derain_cmd", "derain image files or folders with any backend"),
    "info": ("treefuse.cli.info_cmd", "version, default weights, model size and installed backends"),
}

EPILOG = """\
backends are named KIND:PATH, one KIND per row of the format table:
{backends}
options follow a '?': 'openvino:m.onnx?precision=bf16', 'torch:w.safetensors?device=cuda,dtype=fp16'

the pipeline, from weights to a verified engine:
  treefuse info                                         # where the default weights are
  treefuse export onnx --weights W --out m.onnx         # fold, simplify, check, embed provenance
  treefuse parity --ref torch:W --cand onnx:m.onnx --images DIR --json parity.json
  treefuse bench --backend torch:W --backend onnx:m.onnx --size 512x512 --json bench.json
  treefuse derain --backend onnx:m.onnx rainy.png clip.mp4 --tile 512 --out derained/
  treefuse sweep --backend torch:W --backend onnx:m.onnx --sizes 256x256,512x512 --json cpu.json
  treefuse report cpu.json gpu.json --out report/ && treefuse report --verify report/report.md
"""

EXIT_CODES = ("exit codes: 0 ok; 1 a quality gate failed, and nothing else;\n"
              "  2 bad input or usage (one line on stderr: what is wrong and how to fix it);\n"
              "  3 internal error (a bug: the first line says so, the traceback follows)")
# OS errors a user fixes (permissions, a full disk, a path of the wrong kind): exit 2, not a bug.
USER_FIXABLE_OS_ERRORS = {
    errno.EACCES: "permission denied: choose a writable path or fix its permissions",
    errno.EPERM: "operation not permitted: choose another path or fix its permissions",
    errno.EROFS: "the file system is read-only: choose a writable path",
    errno.ENOSPC: "no space left on the device: free space or choose another disk",
    errno.EDQUOT: "disk quota exceeded: free space or choose another disk",
    errno.ENOTDIR: "a file stands where a folder is expected: check the path",
    errno.EISDIR: "a folder stands where a file is expected: check the path",
    errno.ENAMETOOLONG: "the file name is too long: choose a shorter path",
    errno.ENOENT: "no such file or folder: check the path",
}


class UsageParser(argparse.ArgumentParser):
    """argparse that reports a usage error as ONE line (and exit 2), naming the help to read."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"treefuse: error: {message}; see `{self.prog} --help`\n")


def _epilog_with_exit_codes(epilog: str | None) -> str:
    return f"{epilog.rstrip()}\n\n{EXIT_CODES}" if epilog else EXIT_CODES


def build_parser() -> argparse.ArgumentParser:
    parser = UsageParser(
        prog="treefuse", description="Deraining network from training to a verified engine on the camera.",
        epilog=_epilog_with_exit_codes(EPILOG.format(backends=_backend_lines())),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=UsageParser)
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        command.set_defaults(_module=module_name)
        if name == _requested_command():
            _load(module_name).add_arguments(command)
            _add_exit_codes(command)
    return parser


def _backend_lines() -> str:
    from treefuse.formats import FORMATS

    return "\n".join(f"  {fmt.kind + ':model' + fmt.suffix:<29}{fmt.description}" for fmt in FORMATS)


def _add_exit_codes(parser: argparse.ArgumentParser) -> None:
    """Every --help ends with the exit-code contract, subcommands' too."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _epilog_with_exit_codes(parser.epilog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _add_exit_codes(child)


def _requested_command() -> str | None:
    # Only the command being run (or asked for help) needs its module imported: the first
    # positional argument (`treefuse calib info` is calib's, not info's).
    positional = [arg for arg in sys.argv[1:] if not arg.startswith("-")]
    return positional[0] if positional else None


def _load(module_name: str):
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise TreefuseError(f"this command is not implemented yet in treefuse ({module_name})") from None
        raise


def main(argv: list[str] | None = None) -> int:
    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    try:
        parser = build_parser()
        args = parser.parse_args(sys.argv[1:])
        if args.version:
            from treefuse import __version__
            print(__version__)
            return 0
        if not args.command:
            print("treefuse: error: no command given; see `treefuse --help`", file=sys.stderr)
            return 2
        from treefuse.progress import silence

        silence(bool(getattr(args, "json", None)))  # a --json run is a script's: no bars
        try:
            return int(_load(args._module).run(args) or 0)
        finally:
            silence(False)  # for this command only: a later call in the same process decides for itself
    except TreefuseError as exc:
        print(f"treefuse: error: {one_line(exc)}", file=sys.stderr)
        return 2
    except GateFailed as exc:
        print(f"treefuse: gate failed: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head`: not an error of ours
        sys.stdout = open(os.devnull, "w")
        return 0
    except KeyboardInterrupt:
        print("treefuse: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in USER_FIXABLE_OS_ERRORS:
            return _internal_error()
        where = exc.filename or ""
        print(f"treefuse: error: {where + ': ' if where else ''}{USER_FIXABLE_OS_ERRORS[exc.errno]}", file=sys.stderr)
        return 2
    except Exception:  # noqa: BLE001 - a bug: say so, show it, exit 3 (never 1, the gate's code)
        return _internal_error()


def _internal_error() -> int:
    print("treefuse: internal error (a bug in treefuse; please report it with this traceback):", file=sys.stderr)
    traceback.print_exc()
    return 3


if __name__ == "__main__":
    sys.exit(main())
