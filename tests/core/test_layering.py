"""The import contract: data flows weights -> artifact -> runner -> result -> report, and imports follow it.

Read statically (every `import` in every module, at the top of a file or inside a function): the core
imports no stage; `runtimes/` never imports `train/` or `export/`; `calib/` imports neither `export/`
nor `runtimes/`; `train/` imports no deployment stage; `bundle/` and `report/` do not import each other;
a format's bundle engine imports nothing of treefuse inside a bundle. The CLI, the demo and `__main__`
are the thin layer that reaches every stage.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
STAGES = {"train": "treefuse.train", "export": "treefuse.export", "runtimes": "treefuse.runtimes",
          "calib": "treefuse.calib", "report": "treefuse.report", "data": "treefuse.data", "bundle": "treefuse.bundle"}
ENTRY_POINTS = ("treefuse/cli", "treefuse/demo.py", "treefuse/__main__.py")
# stage -> the stages it must never import
FORBIDDEN = {
    "core": set(STAGES.values()),
    "treefuse.runtimes": {"treefuse.train", "treefuse.export", "treefuse.bundle", "treefuse.report"},
    "treefuse.calib": {"treefuse.export", "treefuse.runtimes", "treefuse.train", "treefuse.bundle", "treefuse.report"},
    "treefuse.train": {"treefuse.export", "treefuse.runtimes", "treefuse.bundle", "treefuse.report"},
    "treefuse.export": {"treefuse.train", "treefuse.bundle", "treefuse.report"},
    "treefuse.bundle": {"treefuse.report", "treefuse.train"},
    "treefuse.report": {"treefuse.bundle", "treefuse.train", "treefuse.export"},
    "treefuse.data": {"treefuse.export", "treefuse.runtimes", "treefuse.train", "treefuse.bundle", "treefuse.report"},
}


def stage_of(path: Path) -> str | None:
    relative = path.relative_to(ROOT)
    if any(str(relative).startswith(entry) for entry in ENTRY_POINTS):
        return None
    return "core" if relative.parts[0] == "treefuse" else STAGES.get(relative.parts[0])


def treefuse_imports(path: Path) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
    return [(name, line) for name, line in found if name.startswith("treefuse.")]


def violations() -> list[str]:
    found = []
    for folder in ("treefuse", *STAGES):
        for path in sorted((ROOT / folder).rglob("*.py")):
            stage = stage_of(path)
            for module, line in treefuse_imports(path) if stage else ():
                target = ".".join(module.split(".")[:2])
                if target in FORBIDDEN[stage]:
                    found.append(f"{path.relative_to(ROOT)}:{line} ({stage}) imports {module}")
    return found


def test_imports_follow_the_data_flow():
    assert violations() == []


def test_the_contract_can_fail(tmp_path, monkeypatch):
    (tmp_path / "runtimes").mkdir()
    (tmp_path / "runtimes" / "bad.py").write_text("def f():\n    from treefuse.export.onnx import exporter\n")
    for folder in ("treefuse", *STAGES):
        (tmp_path / folder).mkdir(exist_ok=True)
    monkeypatch.setattr(__import__(__name__), "ROOT", tmp_path)
    assert violations() == ["runtimes/bad.py:2 (treefuse.runtimes) imports treefuse.export.onnx"]
