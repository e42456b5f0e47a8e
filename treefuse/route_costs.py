"""What each route past an INT8 gate miss costs on a recorded machine, so advice ranks them by time, not by guess.

Figures from this project's machine, AMD EPYC with 2 cores, AVX2+FMA only (no AVX-512, VNNI, BF16 or AMX), with
the shipped weights. It is shared, so each route has two figures: quiet (QAT: issue 33's run of the recipe's 150
steps in about 135 s, as docs/quantization.md's ~1.1 it/s) and under load (both measured 2026-12-06 at a load
average of about 11 on 2 cores, beside a training run). The quiet mixed-precision figure is scaled from its loaded
one by QAT's quiet/loaded ratio; re-measure on another CPU, whose flags change both.
"""
from __future__ import annotations

MEASURED_ON = "AMD EPYC, 2 cores, AVX2+FMA (no AVX-512/VNNI/BF16/AMX)"
# `treefuse qat --target ort-qdq --data rain100h-train50 --steps 150 --chunk 30`: patch 64, batch 8, 1 thread.
QAT_SECONDS_PER_STEP = {"quiet": 0.9, "loaded": 16.7}  # loaded: 0.06 it/s over steps 10-30
# `treefuse export onnx --precision int8 --calib CALIB --paired-images heavy-rain-sample5`: the per-layer search
# and the final check, 16 calibration crops of 256x256, 5 pairs of 321x481.
MIXED_PRECISION_SECONDS = {"loaded": 1635.0}
MIXED_PRECISION_SECONDS["quiet"] = MIXED_PRECISION_SECONDS["loaded"] * QAT_SECONDS_PER_STEP["quiet"] / \
    QAT_SECONDS_PER_STEP["loaded"]
MIXED_PRECISION_SET = "5 pairs of 321x481"


def _minutes(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def mixed_precision_text() -> str:
    """The recorded cost of keeping layers in float, in words."""
    return (f"about {_minutes(MIXED_PRECISION_SECONDS['quiet'])} for {MIXED_PRECISION_SET} on a quiet CPU, "
            f"{_minutes(MIXED_PRECISION_SECONDS['loaded'])} under heavy load")


def qat_text(steps: int) -> str:
    """The recorded cost of `steps` QAT steps, in words."""
    return (f"about {_minutes(steps * QAT_SECONDS_PER_STEP['quiet'])} for {steps} steps on a quiet CPU, "
            f"{_minutes(steps * QAT_SECONDS_PER_STEP['loaded'])} under heavy load")


def measured_on_text() -> str:
    """Where the costs were measured: compare, don't promise."""
    return f"times measured on {MEASURED_ON}, treefuse/route_costs.py"
