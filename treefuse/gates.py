"""The one definition of the quality gates, per precision.

Export's budget search, parity, sweep and report all judge with these, and every result
writes the gates it used beside its verdict, so whatever export approves, parity with the
defaults passes. The output-PSNR floor catches a broken artifact (a negated kernel scores
10-20 dB); the task-PSNR drop judges what the camera sees, on average and on its worst image
(a mean over 50 frames can hide one that loses half a dB, and a camera shows every frame).
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any

from treefuse.errors import TreefuseError

MAX_PSNR_DB = 200.0  # float32 round-off between two exact exports scores ~150 dB
MAX_TASK_DROP_DB = 50.0


def check_threshold(name: str, value: float, low: float, high: float) -> None:
    """Refuse a non-finite or out-of-range threshold (a NaN would make every comparison pass)."""
    if not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
        raise TreefuseError(f"{name} threshold {value!r} must be a finite number in [{low:g}, {high:g}] dB")


@dataclass(frozen=True)
class Gates:
    """What a candidate must achieve against its reference to pass."""

    min_output_psnr_db: float
    max_task_drop_db: float  # of the mean task PSNR over the paired images
    max_worst_task_drop_db: float | None = None  # on any single paired image; None: not gated (results before it)
    require_finite: bool = True  # a NaN or Inf anywhere in the output fails, never "bad input"
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_threshold("min output PSNR", self.min_output_psnr_db, 0.0, MAX_PSNR_DB)
        check_threshold("max task drop", self.max_task_drop_db, 0.0, MAX_TASK_DROP_DB)
        if self.max_worst_task_drop_db is not None:
            check_threshold("max worst-image task drop", self.max_worst_task_drop_db, 0.0, MAX_TASK_DROP_DB)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def with_overrides(self, min_output_psnr_db: float | None = None, max_task_drop_db: float | None = None,
                       max_worst_task_drop_db: float | None = None) -> "Gates":
        """These gates with the thresholds a user gave on the command line."""
        changes = {k: v for k, v in (("min_output_psnr_db", min_output_psnr_db),
                                     ("max_task_drop_db", max_task_drop_db),
                                     ("max_worst_task_drop_db", max_worst_task_drop_db)) if v is not None}
        return replace(self, **changes)


# precision -> default gates. Measured on the shipped weights (docs/quantization.md,
# docs/coreml.md): fp32 exports score > 80 dB, fp16 ~70-80 dB, int8 and w8a8 ~38-48 dB.
# The worst-image bound for int8 and w8a8 fails a frame that loses 0.49 dB while the mean passes (docs/quantization.md).
DEFAULT_GATES: dict[str, Gates] = {
    "fp32": Gates(60.0, 0.01, 0.05, precision="fp32"),
    "fp16": Gates(45.0, 0.05, 0.2, precision="fp16"),
    "bf16": Gates(35.0, 0.1, 0.5, precision="bf16"),
    "w8": Gates(40.0, 0.1, 0.5, precision="w8"),
    "int8": Gates(35.0, 0.1, 0.4, precision="int8"),
    "w8a8": Gates(35.0, 0.1, 0.4, precision="w8a8"),
}


def gates_for(precision: str | None) -> Gates:
    """Default gates of a precision; one without a row is refused (it must get a row, not borrow one)."""
    base = (precision or "fp32").split("+")[0].lower()  # 'int8+bf16' (OpenVINO) is judged as int8
    if base not in DEFAULT_GATES:
        raise TreefuseError(f"no gates for precision {base!r}; known precisions: {', '.join(DEFAULT_GATES)}")
    return DEFAULT_GATES[base]


@dataclass(frozen=True)
class Fp16RangeGates:
    """When a layer is unsafe in FP16 (export's range check): it overflows, or too many values flush to zero."""

    max_abs: float = 65504.0  # FP16's largest value
    max_flushed_fraction: float = 0.01  # of a layer's non-zero values below FP16's smallest subnormal (2^-24)


FP16_RANGE_GATES = Fp16RangeGates()


def gates_text(gates: Mapping[str, Any]) -> str:
    """Gates as written in a result (an older one may lack the worst-image bound) in one line of text."""
    worst = gates.get("max_worst_task_drop_db")
    return (f"output PSNR >= {gates['min_output_psnr_db']:g} dB, task drop <= {gates['max_task_drop_db']:g} dB "
            f"(mean)" + (f", <= {worst:g} dB (worst image)" if worst is not None else "")
            + (", finite outputs" if gates.get("require_finite", True) else ""))


def gates_table() -> str:
    """The default gates as text for --help."""
    rows = [f"  {name:<5} {gates_text(g.to_json())}" for name, g in DEFAULT_GATES.items()]
    return ("default gates by the candidate's precision (task drops on paired images only):\n" + "\n".join(rows))
