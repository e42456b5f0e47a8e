"""Every exporter's own gate can fail: with its precision's gates out of reach, each row's export exits 1
and writes nothing. Driven by the format table; rows that cannot run here skip with their reason."""
from __future__ import annotations

import pytest

from treefuse.cli import main
from treefuse.formats import exportable_formats
from treefuse.gates import MAX_PSNR_DB, Gates

SHAPE_OPTIONS = {"range": ["--min-size", "16x16", "--max-size", "64x64"], "fixed": ["--size", "40x56"]}
KINDS = [pytest.param(fmt.kind, marks=pytest.mark.slow) if fmt.slow_to_export else fmt.kind
         for fmt in exportable_formats() if fmt.source == "weights"]  # TensorRT's: tests/export/test_trt_build.py


@pytest.mark.parametrize("kind", KINDS)
def test_an_export_that_misses_its_gate_writes_nothing(kind, tiny_coreml_weights, tmp_path, monkeypatch, capsys):
    from treefuse.export import verify
    from treefuse.formats import format_of

    row = format_of(kind)
    if row.unavailable_reason():
        pytest.skip(row.unavailable_reason())
    unreachable = Gates(MAX_PSNR_DB, 0.0, precision=row.default_precision)  # no export scores 200 dB
    monkeypatch.setattr(verify, "gates_for", lambda precision: unreachable)
    out = tmp_path / f"m{row.suffix}"
    code = main(["export", kind, "--weights", str(tiny_coreml_weights), "--out", str(out),
                 *SHAPE_OPTIONS.get(row.shape.style, [])])
    err = capsys.readouterr().err
    assert code == 1, err
    assert "misses its gates" in err and "nothing was written" in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.iterdir())  # no artifact, no sidecar, no staging debris


def test_a_missed_artifact_is_kept_with_its_companions_and_its_failed_verdict(tmp_path):
    from treefuse.export.request import Converted, _keep_missed
    from treefuse.formats import format_of
    from treefuse.sidecar import read_sidecar, write_sidecar

    staging, out = tmp_path / "staging", tmp_path / "out" / "m.rknn"
    staging.mkdir()
    staged = staging / "m.rknn"
    staged.write_bytes(b"npu program")
    (staging / "m.rknn.sim").mkdir()
    (staging / "m.rknn.sim" / "model.onnx").write_bytes(b"recipe")
    made = Converted("int8", sidecar=({"treefuse.precision": "int8"}, {"precision": "int8"}))
    write_sidecar(staged, *made.sidecar)
    verdict = {"passed": False, "failures": ["task PSNR change -0.3 dB below -0.1"]}
    kept = _keep_missed(staged, out, format_of("rknn"), made, verdict)
    assert kept == out.with_name("m.missed.rknn") and not out.exists()
    assert sorted(p.name for p in kept.parent.iterdir()) == ["m.missed.rknn", "m.missed.rknn.json", "m.missed.rknn.sim"]
    assert (kept.parent / "m.missed.rknn.sim" / "model.onnx").read_bytes() == b"recipe"
    assert read_sidecar(kept)["provenance"]["verification"] == verdict  # bound to the kept bytes, saying it missed
