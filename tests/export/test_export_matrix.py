"""Every format x precision on the format table: export from the CLI, reload, pass parity with the default gates.

Driven by `treefuse.formats.FORMATS`: a format or precision added to the table is covered here
without a new test; one that cannot run here is skipped with its reason.
"""
from __future__ import annotations

import pytest

from treefuse.cli import main
from treefuse.formats import Format, exportable_formats, format_of

SHAPE_OPTIONS = {"range": ["--min-size", "16x16", "--max-size", "64x64"],
                 "fixed": ["--size", "40x56"]}  # converted at the paired images' size (it runs at others too)


def export_cases() -> list[tuple[str, str]]:
    """Every (kind, precision) an exporter row of the format table offers, read when called."""
    return [(fmt.kind, precision) for fmt in exportable_formats() for precision in fmt.precision_names]


CASES = export_cases()


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
    fmt = format_of(kind)
    if fmt.unavailable_reason():
        pytest.skip(fmt.unavailable_reason())
    out = tmp_path / f"m{fmt.suffix}"
    source = _source_options(fmt, precision, weights_path, calib_set, tmp_path)
    calibration = ["--calib", str(calib_set)] if fmt.precision(precision).calibrated else []
    argv = ["export", kind, *source, "--precision", precision, "--out", str(out),
            *SHAPE_OPTIONS.get(fmt.shape.style, []), *calibration]
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


def _source_options(fmt: Format, precision: str, weights_path, calib_set, tmp_path) -> list[str]:
    """--weights, or for a row that builds from ONNX (TensorRT) the ONNX model its precision starts from."""
    if fmt.source == "weights":
        return ["--weights", str(weights_path)]
    onnx_path = tmp_path / "source.onnx"
    quantized = fmt.precision(precision).scheme is not None
    extra = ["--precision", "int8", "--target", "tensorrt", "--calib", str(calib_set)] if quantized else []
    assert main(["export", "onnx", "--weights", str(weights_path), "--out", str(onnx_path), *extra]) == 0
    return ["--onnx", str(onnx_path), "--min-shape", "1x3x16x16", "--opt-shape", "1x3x40x56",
            "--max-shape", "1x3x64x64"]
