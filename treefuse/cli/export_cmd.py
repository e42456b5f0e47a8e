"""`treefuse export KIND ...`: one sub-command per exportable row of the format table.

What every format takes (source, --out, --precision with the row's choices, --calib, --paired-images,
--qat, shape options) is read off its row; a format's own options come from the module the row
names, and reach its exporter as `ExportRequest.options`.
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from treefuse.formats import Format, exportable_formats

SHAPE_HELP = {"range": "Height and width may be any size in --min-size .. --max-size.",
              "fixed": "Converted at --size; the runner fits other sizes to it.",
              "dynamic": "Batch, height and width are dynamic.", "profile": "Shapes come from the profile options."}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for row in exportable_formats():
        sub = formats.add_parser(row.kind, help=row.export_help, description=_description(row),
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
        add_row_arguments(sub, row)


def add_row_arguments(parser: argparse.ArgumentParser, row: Format) -> None:
    """The options the row says its format takes, then the format's own (recorded as request options)."""
    from treefuse.cli.args import parse_size, weights_path

    if row.source == "onnx":
        parser.add_argument("--onnx", type=Path, required=True, help="the ONNX model to build from")
    else:
        parser.add_argument("--weights", type=weights_path, default=None,
                            help="treefuse weights (`default` or omitted: the shipped ones)")
    parser.add_argument("--out", type=Path, required=True, help=f"the {row.suffix} {'package' if row.is_folder else 'file'} "
                        "to write (replaced atomically; never a folder of yours)")
    parser.add_argument("--precision", choices=row.precision_names, default=row.default_precision,
                        help=f"default {row.default_precision}; each is judged by its own gates (`treefuse parity --help`)")
    calibrated = [p.name for p in row.precisions if p.calibrated]
    if calibrated:
        parser.add_argument("--calib", type=Path, default=None, metavar="CALIB_DIR",
                            help=f"calibration set folder (`treefuse calib build`); required for {' and '.join(calibrated)}")
    if row.source == "weights":
        parser.add_argument("--paired-images", type=Path, default=None, metavar="PAIRS",
                            help="paired folder (rain/ + clean/): export's own check judges the task PSNR on it")
    quantized = [p.name for p in row.precisions if p.scheme]
    if quantized and row.source == "weights":
        parser.add_argument("--qat", type=Path, default=None, metavar="RUN_DIR",
                            help=f"{' / '.join(quantized)}: write what a `treefuse qat --target {row.kind}` run learned "
                                 "(weights and scales as they are; no calibration)")
    if row.shape.style == "range":
        parser.add_argument("--min-size", type=parse_size, default=row.shape.min_hw, metavar="HxW",
                            help=f"smallest input the artifact accepts (default {_hw(row.shape.min_hw)})")
        parser.add_argument("--max-size", type=parse_size, default=row.shape.max_hw, metavar="HxW",
                            help=f"largest input the artifact accepts (default {_hw(row.shape.max_hw)})")
    elif row.shape.style == "fixed":
        parser.add_argument("--size", type=parse_size, default=row.shape.size, metavar="HxW",
                            help=f"input size the model is converted at (default {_hw(row.shape.size)})")
    parser.add_argument("--keep-missed", action="store_true",
                        help="when the artifact misses its gates, keep it as OUT's name with .missed before the suffix "
                             "(with its verdict) for `treefuse diff`; --out stays untouched and the exit is still 1")
    common = {action.dest for action in parser._actions}
    if row.export_options:
        importlib.import_module(row.export_options).add_arguments(parser)
    parser.set_defaults(_format_options=[action.dest for action in parser._actions if action.dest not in common])


def _description(row: Format) -> str:
    gates = ", ".join(f"{p.name} (gate {p.gate}{', ' + p.scheme if p.scheme else ''})" for p in row.precisions)
    reference = "the ONNX model on ONNX Runtime" if row.source == "onnx" else "PyTorch"
    return (f"{row.export_help}.\nPrecisions: {gates}.\n{SHAPE_HELP[row.shape.style]} The export runs through its own "
            f"runner against {reference} and is judged by its precision's gates before it is written.")


def _hw(hw: tuple[int, int]) -> str:
    return f"{hw[0]}x{hw[1]}"


def run(args: argparse.Namespace) -> int:
    from treefuse.cli.args import default_weights
    from treefuse.export.request import ExportRequest, run_export

    source = args.onnx if hasattr(args, "onnx") else (args.weights or default_weights())
    request = ExportRequest(
        kind=args.format, source=source, out=args.out, precision=args.precision,
        calibration=getattr(args, "calib", None) if "calib" not in args._format_options else None,
        paired_images=getattr(args, "paired_images", None), qat_run=getattr(args, "qat", None),
        min_hw=getattr(args, "min_size", None), max_hw=getattr(args, "max_size", None), size=getattr(args, "size", None),
        options={name: getattr(args, name) for name in args._format_options}, keep_missed=args.keep_missed)
    print(run_export(request))
    return 0
