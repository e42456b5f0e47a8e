"""Helpers shared by the runner tests."""
from treefuse.runtimes.backends.registry import make_runner


def run_backend(spec: str, batch):
    """Output and describe() of one backend on one batch."""
    with make_runner(spec) as runner:
        return runner.infer(batch), runner.describe()
