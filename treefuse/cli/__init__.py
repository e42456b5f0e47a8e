"""The `treefuse` command: a thin layer that parses arguments and calls the stages.

Each command lives in its own module here with `add_arguments(parser)` and
`run(args) -> exit code`; modules are imported only when their command runs.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from treefuse.errors import GateFailed, TreefuseError

# name -> (module, one-line help). The order is the pipeline's order.
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("treefuse.cli.train_cmd", "train the model on paired or synthetic-rain data (resumable)"),
    "evaluate": ("treefuse.cli.evaluate_cmd", "PSNR/SSIM of a backend against ground truth on a paired folder"),
    "export": ("treefuse.cli.export_cmd", "convert weights to ONNX (fp32/fp16/int8), TensorRT or Core ML"),
    "calib": ("treefuse.cli.calib_cmd", "build, verify and inspect INT8 calibration sets"),
    "parity": ("treefuse.cli.parity_cmd", "check a candidate backend's output against a reference backend"),
    "bench": ("treefuse.cli.bench_cmd", "measure latency of several backends side by side"),
    "sweep": ("treefuse.cli.sweep_cmd", "latency and parity of backends across resolutions, for a device report"),
    "report": ("treefuse.cli.report_cmd", "merge result files into a Markdown and HTML report"),
    "derain": ("treefuse.cli.derain_cmd", "derain image files or folders with any backend"),
    "info": ("treefuse.cli.info_cmd", "version, default weights, model size and installed backends"),
}

EPILOG = """\
backends are named KIND:PATH, for example:
  torch:weights.safetensors    PyTorch (the reference)
  onnx:model.onnx              ONNX Runtime
  trt:model.engine             TensorRT (needs a GPU and the tensorrt extra)
  coreml:model.mlpackage       Core ML (runs on Linux through treefuse's own evaluator)
  openvino:model.onnx          OpenVINO (x86 camera boxes)
options follow a '?': 'openvino:m.onnx?precision=bf16', 'torch:w.safetensors?device=cuda,dtype=fp16'

the pipeline, from weights to a verified engine:
  treefuse info                                         # where the default weights are
  treefuse export onnx --weights W --out m.onnx         # fold, simplify, check, embed provenance
  treefuse parity --ref torch:W --cand onnx:m.onnx --images DIR --json parity.json
  treefuse bench --backend torch:W --backend onnx:m.onnx --size 512x512 --json bench.json
  treefuse derain --backend onnx:m.onnx rainy.png clip.mp4 --tile 512 --out derained/
  treefuse sweep --backend torch:W --backend onnx:m.onnx --sizes 256x256,512x512 --json cpu.json
  treefuse report cpu.json gpu.json --out report/ && treefuse report --verify report/report.md

exit codes: 0 ok, 1 a quality gate failed, 2 bad input (one line on stderr says why)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="treefuse", description="Deraining network from training to a verified engine on the camera.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        command.set_defaults(_module=module_name)
        if name == _requested_command():
            _load(module_name).add_arguments(command)
    return parser


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
            parser.print_help()
            return 2
        return int(_load(args._module).run(args) or 0)
    except TreefuseError as exc:
        print(f"treefuse: error: {exc}", file=sys.stderr)
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


if __name__ == "__main__":
    sys.exit(main())
