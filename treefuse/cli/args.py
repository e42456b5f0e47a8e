"""Argument types shared by several commands; each refuses bad values with one line."""
from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Callable

from treefuse.errors import TreefuseError


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W), both positive."""
    match = re.fullmatch(r"\s*(-?\d+)\s*[xX]\s*(-?\d+)\s*", text)
    if not match:
        raise TreefuseError(f"size {text!r} must be HxW, e.g. 512x512")
    height, width = int(match.group(1)), int(match.group(2))
    if height < 1 or width < 1:
        raise TreefuseError(f"size {text!r}: height and width must be positive")
    return height, width


def positive_int(option: str, minimum: int = 1) -> Callable[[str], int]:
    """An argparse type for `option`: a whole number of at least `minimum`, refused in one line otherwise."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise TreefuseError(f"{option} {text!r} must be a whole number, e.g. {option} 2") from None
        if value < minimum:
            raise TreefuseError(f"{option} must be at least {minimum}, got {value}")
        return value
    return parse


def add_backend_option(parser: argparse.ArgumentParser, name: str = "--backend", **kwargs) -> None:
    from treefuse.formats import FORMATS

    examples = ", ".join(f"{fmt.kind}:m{fmt.suffix}" for fmt in FORMATS)
    parser.add_argument(name, metavar="KIND:PATH", help=f"backend and artifact, one of {examples}", **kwargs)


def add_json_option(parser: argparse.ArgumentParser, required: bool = False) -> None:
    parser.add_argument("--json", type=Path, metavar="OUT", required=required,
                        help="write the machine-readable result here (atomically)")


def weights_path(text: str) -> Path:
    """An argparse type for weights options: a .safetensors path, or `default` for the shipped weights."""
    from treefuse.checkpoint import resolve_weights

    return resolve_weights(text)


def default_weights() -> Path:
    from treefuse.checkpoint import DEFAULT_WEIGHTS

    if not DEFAULT_WEIGHTS.is_file():
        raise TreefuseError(f"the default weights are missing ({DEFAULT_WEIGHTS}); pass --weights")
    return DEFAULT_WEIGHTS
