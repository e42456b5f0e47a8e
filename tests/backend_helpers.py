"""Helpers shared by the runner tests."""
import numpy as np

from treefuse.images import from_batch
from treefuse.metrics import calculate_psnr
from treefuse.runtimes.backends.registry import make_runner


def run_backend(spec: str, batch):
    """Output and describe() of one backend on one batch."""
    with make_runner(spec) as runner:
        return runner.infer(batch), runner.describe()


def min_psnr(output: np.ndarray, reference: np.ndarray) -> float:
    """The lowest per-image PSNR of a batch against its reference, both clipped to [0, 1]."""
    return min(calculate_psnr(from_batch(np.clip(o[None], 0, 1)), from_batch(np.clip(r[None], 0, 1)))
               for o, r in zip(output, reference))
