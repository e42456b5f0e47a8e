"""Optimization-profile shapes (min/opt/max NxCxHxW) for TensorRT builds and the `export trt` CLI."""
from __future__ import annotations

from dataclasses import dataclass

from treefuse.errors import TreefuseError

Shape = tuple[int, int, int, int]
DEFAULT_MIN, DEFAULT_OPT, DEFAULT_MAX = "1x3x32x32", "1x3x720x1280", "1x3x1080x1920"


def parse_shape(text: str) -> Shape:
    """'1x3x720x1280' -> (1, 3, 720, 1280): NCHW with three colour channels."""
    parts = text.lower().split("x")
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise TreefuseError(f"shape {text!r} must be NxCxHxW with positive integers, e.g. 1x3x720x1280")
    shape = tuple(int(p) for p in parts)
    if shape[1] != 3:
        raise TreefuseError(f"shape {text!r} must have 3 channels (RGB), e.g. 1x3x720x1280")
    return shape  # type: ignore[return-value]


def format_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


@dataclass(frozen=True)
class ShapeProfile:
    """The input shapes an engine accepts (min..max) and is tuned for (opt)."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        if not all(lo <= mid <= hi for lo, mid, hi in zip(self.min, self.opt, self.max)):
            raise TreefuseError(
                f"profile shapes must satisfy min <= opt <= max in every dimension, got min {format_shape(self.min)}, "
                f"opt {format_shape(self.opt)}, max {format_shape(self.max)}")

    @classmethod
    def from_text(cls, min_text: str, opt_text: str, max_text: str) -> "ShapeProfile":
        return cls(parse_shape(min_text), parse_shape(opt_text), parse_shape(max_text))

    def to_dict(self) -> dict[str, list[int]]:
        return {"min": list(self.min), "opt": list(self.opt), "max": list(self.max)}
