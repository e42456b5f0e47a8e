"""Mutated manifests and golden files are a bad bundle (exit 2), never a crash (exit 3)."""
from __future__ import annotations

import io
import shutil
from contextlib import redirect_stderr

import numpy as np

from treefuse.portable.device_run import main

from fuzz import MUTATIONS, mutate

def test_mutated_manifest_and_golden_exit_2_never_3(onnx_bundle, tmp_path):
    rng = np.random.default_rng(22)
    bundle = tmp_path / "b"
    shutil.copytree(onnx_bundle, bundle)
    originals = {name: (bundle / name).read_bytes() for name in ("manifest.json", "golden.npz", "bundle.json")}
    codes = []
    for trial in range(45):
        name = list(originals)[trial % len(originals)]
        (bundle / name).write_bytes(mutate(originals[name], MUTATIONS[trial // 3 % len(MUTATIONS)], rng))
        stderr = io.StringIO()
        with redirect_stderr(stderr):
            code = main(bundle, ["--iters", "1"])
        (bundle / name).write_bytes(originals[name])
        codes.append(code)
        assert code == 2, f"trial {trial} ({name}): exit {code}: {stderr.getvalue()[:300]}"
        assert len(stderr.getvalue().strip().splitlines()) == 1
    assert set(codes) == {2}
