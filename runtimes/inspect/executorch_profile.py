"""ExecuTorch's ETDump: the XNNPACK delegate's own per-operator timings (its op names, not the model's layers).

XNNPACK runs the whole program as one delegate call; ETDump still records each XNNPACK operator
inside it (`Convolution (NHWC, QC8) IGEMM #3`), in execution order. Those names carry no module
path, so `profile` groups ExecuTorch by op type only.
"""
from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.quiet import held_stderr
from treefuse.runtimes.backends.base import Runner

WRAPPERS = {"DELEGATE_CALL", "Method::execute", "OPERATOR_CALL"}  # they contain the operators: counted twice


def profile(runner: Runner, batch: np.ndarray, runs: int) -> tuple[str, list[dict[str, Any]]]:
    """('ExecuTorch ETDump (XNNPACK operators)', one row per operator per profiled run) for an active runner."""
    import torch
    from executorch.devtools import Inspector
    from executorch.runtime import Runtime

    with tempfile.TemporaryDirectory(prefix="treefuse-etdump-") as folder, held_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Output Buffer not found": no debug buffer was asked for, timings only
        program = Runtime.get().load_program(str(runner.path), enable_etdump=True, debug_buffer_size=0)
        method = program.load_method("forward")
        image = torch.from_numpy(np.require(batch[:1], requirements="CW"))
        for _ in range(runs + 1):
            method.execute([image])
        etdump = Path(folder) / "run.etdp"
        program.write_etdump_result_to_file(str(etdump), str(Path(folder) / "debug.bin"))
        blocks = Inspector(etdump_path=str(etdump)).event_blocks
    rows = []
    for block in blocks:
        for event in block.events:
            if event.name in WRAPPERS or event.perf_data is None or not event.is_delegated_op:
                continue
            for milliseconds in list(event.perf_data.raw)[1:]:  # the first run is the warm-up
                rows.append({"node": event.name, "op_type": event.name.split(" #")[0], "ms": float(milliseconds)})
    return "ExecuTorch ETDump (XNNPACK operators)", rows
