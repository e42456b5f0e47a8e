"""`treefuse export FORMAT ...`: one sub-command per format, each in its own module."""
from __future__ import annotations

import argparse
import importlib

from treefuse.formats import exportable_formats

# format -> (module with add_arguments/run, one-line help), from the one format table.
FORMATS: dict[str, tuple[str, str]] = {fmt.kind: (fmt.export_cli, fmt.export_help) for fmt in exportable_formats()}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    formats = parser.add_subparsers(dest="format", metavar="FORMAT", required=True)
    for name, (module_name, help_text) in FORMATS.items():
        sub = formats.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_format_module=module_name)
        try:
            importlib.import_module(module_name).add_arguments(sub)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            sub.set_defaults(_format_missing=True)


def run(args: argparse.Namespace) -> int:
    from treefuse.errors import TreefuseError

    if getattr(args, "_format_missing", False):
        raise TreefuseError(f"export {args.format} is not implemented yet in this version of treefuse")
    return importlib.import_module(args._format_module).run(args)
