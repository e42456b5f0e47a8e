"""The format table drives everything: a toy row is picked up by the CLI, --help, info, the registry,
the benchmark matrix, export's own gate and the table-driven tests; every row is complete."""
from __future__ import annotations

import json

import pytest

import toy_format
from treefuse.cli import main
from treefuse.formats import FORMATS, QUANT_SCHEMES, benchmark_matrix, exportable_formats, resolve
from treefuse.gates import DEFAULT_GATES


@pytest.fixture()
def toy_row(monkeypatch):
    monkeypatch.setattr("treefuse.formats.FORMATS", [*FORMATS, toy_format.TOY])
    monkeypatch.setitem(toy_format.BROKEN, "scale", 1.0)
    return toy_format.TOY


def test_every_precision_names_a_gate_row_and_a_known_scheme():
    for row in FORMATS:
        for precision in row.precisions:
            assert precision.gate in DEFAULT_GATES, f"{row.kind} {precision.name}: no gate row {precision.gate!r}"
            assert precision.scheme is None or precision.scheme in QUANT_SCHEMES, (row.kind, precision.scheme)
        assert row.default_precision in row.precision_names


def test_every_row_names_code_that_exists():
    for row in FORMATS:
        names = [row.runner] + [name for name in (row.exporter, row.available) if name]
        for name in names:
            if row.missing_modules():
                continue  # its runtime is absent here: importing its runner would fail by design
            assert callable(resolve(name)), name


def test_export_help_lists_exactly_the_table_precisions(capsys):
    for row in exportable_formats():
        with pytest.raises(SystemExit):
            main(["export", row.kind, "--help"])
        usage = capsys.readouterr().out
        assert "{" + ",".join(row.precision_names) + "}" in usage, row.kind


def test_a_toy_row_reaches_cli_help_info_registry_and_benchmark(toy_row, capsys):
    with pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "toy" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["export", "toy", "--help"])
    help_text = capsys.readouterr().out
    assert "{fp32,fp16}" in help_text and "--size" in help_text and "--min-size" not in help_text
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    toy = next(fmt for fmt in info["formats"] if fmt["kind"] == "toy")
    assert toy["precisions"] == ["fp32", "fp16"] and toy["gates"] == {"fp32": "fp32", "fp16": "fp16"}
    assert ("toy", "fp32") in benchmark_matrix() and ("toy", "fp16") not in benchmark_matrix()
    export_cases = _test_module("export/test_export_matrix.py").export_cases
    contract_kinds = _test_module("runtimes/test_runner_contract.py").contract_kinds
    assert ("toy", "fp32") in export_cases() and "toy" in contract_kinds()


def test_a_toy_export_is_judged_by_its_gate(toy_row, weights_path, paired_dir, tmp_path, capsys, monkeypatch):
    out = tmp_path / "m.toy"
    assert main(["export", "toy", "--weights", str(weights_path), "--out", str(out)]) == 0
    assert main(["parity", "--ref", f"torch:{weights_path}", "--cand", f"toy:{out}", "--images", str(paired_dir),
                 "--json", str(tmp_path / "p.json")]) == 0  # the registry runs toy: through its row
    assert json.loads((tmp_path / "p.json").read_text())["candidate"]["kind"] == "toy"
    capsys.readouterr()
    monkeypatch.setitem(toy_format.BROKEN, "scale", 0.9)
    broken = tmp_path / "broken.toy"
    assert main(["export", "toy", "--weights", str(weights_path), "--out", str(broken)]) == 1
    err = capsys.readouterr().err
    assert "misses its gates" in err and "nothing was written" in err and not broken.exists()
    assert err.count("\n") == 1


def _test_module(relative: str):
    """Another folder's test module, loaded by path (test folders are not packages)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / relative
    spec = importlib.util.spec_from_file_location(f"table_driven_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_row_extra_is_a_pyproject_extra_and_make_install_takes_them():
    import tomllib
    from pathlib import Path

    from treefuse.formats import format_extras

    root = Path(__file__).resolve().parents[2]
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert {fmt.extra for fmt in FORMATS if fmt.extra} <= set(extras)
    assert "treefuse/formats.py" in (root / "Makefile").read_text() and format_extras()


def test_keep_missed_keeps_what_missed_beside_an_untouched_out(toy_row, weights_path, paired_dir, tmp_path, capsys,
                                                              monkeypatch):
    out = tmp_path / "m.toy"
    assert main(["export", "toy", "--weights", str(weights_path), "--out", str(out)]) == 0
    good = out.read_bytes()
    capsys.readouterr()
    monkeypatch.setitem(toy_format.BROKEN, "scale", 0.9)
    assert main(["export", "toy", "--weights", str(weights_path), "--keep-missed", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "misses its gates" in err and "kept as" in err, err
    missed = tmp_path / "m.missed.toy"
    assert out.read_bytes() == good and missed.is_file() and missed.read_bytes() != good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.missed.toy", "m.toy"]
    # what was kept is the artifact that missed: parity judges it the same way
    assert main(["parity", "--ref", f"torch:{weights_path}", "--cand", f"toy:{missed}", "--images", str(paired_dir),
                 "--json", str(tmp_path / "p.json")]) == 1
