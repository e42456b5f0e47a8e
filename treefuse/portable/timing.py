"""Latency percentiles from per-call times, on numpy alone."""
from __future__ import annotations

from typing import Any

import numpy as np

UNSTABLE_P90_OVER_P50 = 1.5  # above it, a figure says more about the machine's noise than the backend


def latency_summary(seconds: list[float], batch: int) -> dict[str, Any]:
    """Percentiles in milliseconds and images per second from per-call times."""
    ms = np.asarray(seconds) * 1000.0
    p50, p90 = float(np.percentile(ms, 50)), float(np.percentile(ms, 90))
    return {"latency_ms": {"p50": p50, "p90": p90,
                           "p99": float(np.percentile(ms, 99)), "mean": float(ms.mean()), "min": float(ms.min())},
            "throughput_img_per_s": float(batch * 1000.0 / np.median(ms)), "iterations": int(ms.size),
            "unstable": p90 > UNSTABLE_P90_OVER_P50 * p50}
