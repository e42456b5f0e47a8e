"""Every list of formats is read off the format table: QAT targets and aliases, bundle kinds, tool versions, extras."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from treefuse.formats import FORMATS, QUANT_SCHEMES, bundle_kinds, qat_exports, resolve, scheme_of_kind

tomllib = pytest.importorskip("tomllib", reason="reading pyproject.toml needs Python 3.11's tomllib")
ROOT = Path(__file__).resolve().parents[2]
NON_FORMAT_EXTRAS = {"test", "report", "video", "litert-convert"}  # tools around the formats, not a format's runtime


def pyproject_extras() -> dict[str, list[str]]:
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return {name: [re.split(r"[<>=!~\[ ;]", spec, maxsplit=1)[0] for spec in specs] for name, specs in extras.items()}


def test_pyproject_extras_are_the_table_s_extras():
    extras = pyproject_extras()
    row_extras = {fmt.extra for fmt in FORMATS if fmt.extra}
    assert row_extras <= set(extras), f"rows name extras pyproject lacks: {row_extras - set(extras)}"
    assert set(extras) - row_extras == NON_FORMAT_EXTRAS, "an extra no row names: add its row or list it here"
    for fmt in FORMATS:
        if fmt.extra:  # the extra installs the modules the row needs to run
            packages = {name.replace("-", "_") for name in extras[fmt.extra]}
            assert {module.split(".")[0] for module in fmt.requires} <= packages | {"ai_edge_litert"}, fmt.kind


def test_tool_versions_cover_every_installed_format_extra():
    from importlib.metadata import PackageNotFoundError, version

    from treefuse.provenance import tool_versions

    recorded = tool_versions()
    for fmt in FORMATS:
        for package in pyproject_extras().get(fmt.extra or "", []):
            try:
                version(package)
            except PackageNotFoundError:
                continue
            assert package in recorded, (fmt.kind, package)


def test_every_scheme_has_its_qat_hooks_a_recipe_and_an_export():
    from treefuse.qat_run import ALIASES, TARGETS

    assert set(TARGETS) == set(QUANT_SCHEMES)
    for name, scheme in QUANT_SCHEMES.items():
        assert TARGETS[name].defaults.steps > 0
        assert qat_exports(name), f"no export takes a {name} run"
        for hook in (scheme.qat_start, scheme.qat_network):
            module, _, function = hook.partition(":")
            assert (ROOT / "/".join(module.split(".")[1:])).with_suffix(".py").is_file() or \
                (ROOT / "export" / "/".join(module.split(".")[2:])).with_suffix(".py").is_file(), hook
            assert function
    assert {kind: ALIASES[kind] for kind in scheme_of_kind()} == scheme_of_kind()


def test_a_new_row_is_picked_up_by_every_list(monkeypatch):
    from dataclasses import replace

    from treefuse.formats import Precision
    from treefuse.qat_run import TARGETS

    onnx = next(fmt for fmt in FORMATS if fmt.kind == "onnx")
    toy = replace(onnx, kind="toy-npu", precisions=(Precision("int8", "int8", "ort-qdq", calibrated=True),))
    monkeypatch.setattr("treefuse.formats.FORMATS", [*FORMATS, toy])
    assert "toy-npu" in bundle_kinds()
    assert scheme_of_kind()["toy-npu"] == "ort-qdq"
    assert "export toy-npu --precision int8" in TARGETS["ort-qdq"].exports


def test_bundle_engines_import_nothing_of_treefuse_inside_a_bundle():
    for kind in bundle_kinds():
        module = next(fmt for fmt in FORMATS if fmt.kind == kind).bundle_engine
        source = Path(resolve(module + ":load").__code__.co_filename).read_text()
        top_level = [line for line in source.splitlines() if re.match(r"(from|import) treefuse", line)]
        assert not top_level, f"{module} imports treefuse outside its fallback: {top_level}"
        assert hasattr(resolve(module + ":load"), "__call__") and resolve(module + ":NEEDS")


def _portable_engines() -> dict[str, object]:
    """kind -> bundle engine module, for every format whose engine runs on a plain Linux CPU from pip runtimes
    (the board engines, such as Rockchip's, need their board and name no RUNTIMES)."""
    from importlib import import_module

    engines = {fmt.kind: import_module(fmt.bundle_engine) for fmt in FORMATS if fmt.bundle_engine}
    return {kind: engine for kind, engine in engines.items() if getattr(engine, "RUNTIMES", None)}


def test_the_arm64_check_runs_every_portable_bundle_kind():
    # bundle/arm64_check.py lists artifacts (which file, exported how): a test plan, checked against the table here
    from treefuse.bundle.arm64_check import TARGETS

    assert set(_portable_engines()) <= {target.kind for target in TARGETS}, "a bundle kind arm64-check never runs"


def test_the_arm64_root_installs_every_portable_runtime():
    script = (ROOT / "bundle" / "arm64_root.sh").read_text()
    pinned = set(re.findall(r"([A-Za-z0-9_.-]+)==", script))
    for kind, engine in _portable_engines().items():
        packages = [package for _, package in engine.RUNTIMES]
        assert set(packages) & pinned, f"bundle/arm64_root.sh installs none of {kind}'s runtimes {packages}"
