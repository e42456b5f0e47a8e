"""Every format x precision on the format table: export from the CLI, reload, pass parity with the default gates.

Driven by `treefuse.formats.FORMATS`: a format or precision added to the table is covered here
without a new test; one that cannot run here is skipped with its reason.
"""
from __future__ import annotations

import pytest

from treefuse.cli import main
from treefuse.formats import FORMATS

NEEDS_CALIBRATION = {"int8", "w8a8"}
NOT_RUNNABLE_HERE = {"trt": "TensorRT needs an NVIDIA GPU (tested against a stand-in in test_trt_*.py)"}
SHAPE_OPTIONS = {"coreml": ["--min-size", "16x16", "--max-size", "64x64"],
                 "executorch": ["--min-size", "16x16", "--max-size", "64x64"],
                 "litert": ["--size", "40x56"]}  # converted at the paired images' size (it runs at others too)
SUFFIX = {fmt.kind: fmt.suffix for fmt in FORMATS}
CASES = [(fmt.kind, precision) for fmt in FORMATS if fmt.export_cli for precision in fmt.precisions]


@pytest.fixture(scope="module")
def calib_set(paired_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("matrix") / "calib"
    assert main(["calib", "build", "--images", str(paired_dir / "rain"), "--count", "3", "--size", "32x32",
                 "--out", str(out)]) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("kind,precision", CASES, ids=[f"{k}-{p}" for k, p in CASES])
def test_export_reload_and_pass_parity(kind, precision, tiny_coreml_weights, paired_dir, calib_set, tmp_path, capsys):
    weights_path = tiny_coreml_weights  # 4 channels, 2 blocks: every conversion takes seconds
    fmt = next(f for f in FORMATS if f.kind == kind)
    if kind in NOT_RUNNABLE_HERE or fmt.unavailable_reason():
        pytest.skip(NOT_RUNNABLE_HERE.get(kind) or fmt.unavailable_reason())
    out = tmp_path / f"m{SUFFIX[kind]}"
    argv = ["export", kind, "--weights", str(weights_path), "--precision", precision, "--out", str(out),
            *SHAPE_OPTIONS.get(kind, []), *(["--calib", str(calib_set)] if precision in NEEDS_CALIBRATION else [])]
    code = main(argv)
    err = capsys.readouterr().err
    if code == 2 and "converter" in err.lower():
        pytest.skip(f"not installed here: {err.strip()}")
    assert code == 0, err
    assert main(["parity", "--ref", f"torch:{weights_path}", "--cand", f"{kind}:{out}", "--images", str(paired_dir),
                 "--json", str(tmp_path / "p.json")]) == 0, capsys.readouterr()
    import json

    result = json.loads((tmp_path / "p.json").read_text())
    assert result["candidate"]["artifact"]["precision"] == precision
    assert result["gates"]["precision"] == precision  # judged by its own precision's default gates
