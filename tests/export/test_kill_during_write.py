"""kill -9 at the worst instants of every writer: the output is the old artifact whole, or the new one whole.

Each case runs the writer in a child process that SIGKILLs itself (a) just before the staged
output is moved into place and (b) just after, before the staging area is cleaned up. Then
the target must hold the old artifact byte for byte, or a new one that loads; staging debris
must be hidden, recognisable, and must not block the next run.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from treefuse.files import is_staging_debris, sha256_file

pytestmark = pytest.mark.slow

# writer -> (python that writes `out` from `weights` / `calib` / `result`, how to check the output loads)
WRITERS = {
    "onnx": ("from treefuse.export.onnx.exporter import export_onnx; export_onnx(weights, out)",
             "import onnx; onnx.checker.check_model(onnx.load(out))"),
    "coreml": ("from treefuse.export.coreml.exporter import export_coreml; "
               "export_coreml(weights, out, 'fp16', min_hw=(16, 16), max_hw=(64, 64))",
               "from treefuse.runtimes.backends.coreml_mil import load_program; load_program(out)"),
    "calib": ("from treefuse.calib.build import build_calibration_set; "
              "build_calibration_set(images, out, count=2, size_hw=(16, 16), seed=SEED)",
              "from treefuse.calib.store import load_calibration_set; load_calibration_set(out)"),
    "report": ("from treefuse.report.build import write_report; write_report([Path(result)], Path(out))",
               "from treefuse.report.manifest import read_manifest; "
               "read_manifest(Path(out) / 'report.md'); read_manifest(Path(out) / 'report.html')"),
}
KILLS = {  # wrapped around the one instant an output changes (treefuse.files._move_into_place)
    "before_swap": "def move(*a):\n    os.kill(os.getpid(), signal.SIGKILL)",
    "after_swap": "def move(*a):\n    real(*a)\n    os.kill(os.getpid(), signal.SIGKILL)",
}


def _child(writer: str, kill: str | None, paths: dict[str, str], seed: int) -> subprocess.CompletedProcess:
    write, _ = WRITERS[writer]
    script = textwrap.dedent(f"""
        import os, signal, sys
        from pathlib import Path
        weights, out, images, result, SEED = {paths['weights']!r}, {paths['out']!r}, {paths['images']!r}, \\
            {paths['result']!r}, {seed}
        import treefuse.files as files
        real = files._move_into_place
        """) + (KILLS[kill] + "\nfiles._move_into_place = move\n" if kill else "") + write + "\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)


def _loads(writer: str, out: Path) -> None:
    _, check = WRITERS[writer]
    subprocess.run([sys.executable, "-c", f"from pathlib import Path\nout = {str(out)!r}\n{check}"], check=True,
                   capture_output=True, timeout=300)


def _outside_debris(path: Path, root: Path) -> bool:
    return not any(is_staging_debris(part) for part in path.relative_to(root).parts[:-1])


def _hash(out: Path) -> str:
    """The artifact's hash, staging debris left out (a report's staging sits inside its folder)."""
    if out.is_file():
        return sha256_file(out)
    return "".join(sha256_file(p) for p in sorted(out.rglob("*")) if p.is_file() and _outside_debris(p, out)
                   and not is_staging_debris(p))


@pytest.fixture(scope="module")
def sources(tmp_path_factory, tiny_coreml_weights, paired_dir):
    import json

    from treefuse.results import BenchResult

    folder = tmp_path_factory.mktemp("kill_sources")
    result = folder / "bench.json"
    backend = {"kind": "onnx", "spec": "onnx:m.onnx", "path": "m.onnx", "sha256": "0" * 64, "precision": "fp32",
               "latency_ms": {"p50": 5.0, "p90": 6.0}, "throughput_img_per_s": 200.0}
    record = BenchResult(device={"cpu": {"model": "test", "logical_cores": 2, "isa_flags": []}}, size=[64, 64],
                         backends=[backend])
    result.write_text(json.dumps(record.to_json()))
    return {"weights": str(tiny_coreml_weights), "images": str(paired_dir / "rain"), "result": str(result)}


@pytest.fixture(scope="module")
def first_outputs(sources, tmp_path_factory):
    """Each writer's output made once: the 'old' artifact every kill test starts from (a copy of it)."""
    made = {}
    for writer, name in {"onnx": "m.onnx", "coreml": "m.mlpackage", "calib": "calib", "report": "report"}.items():
        out = tmp_path_factory.mktemp(f"first_{writer}") / name
        if writer == "coreml" and importlib.util.find_spec("coremltools") is None:
            continue
        done = _child(writer, None, {**sources, "out": str(out)}, seed=0)
        assert done.returncode == 0, done.stderr
        made[writer] = out
    return made


@pytest.mark.parametrize("kill", list(KILLS))
@pytest.mark.parametrize("writer", list(WRITERS))
def test_a_kill_leaves_the_old_or_the_new_artifact_whole(writer, kill, sources, first_outputs, tmp_path):
    if writer == "coreml":
        pytest.importorskip("coremltools", reason="coremltools is not installed (pip install 'treefuse[coreml]')")
    out = tmp_path / first_outputs[writer].name
    (shutil.copytree if first_outputs[writer].is_dir() else shutil.copy)(first_outputs[writer], out)
    paths = {**sources, "out": str(out)}
    old_hash = _hash(out)
    killed = _child(writer, kill, paths, seed=1)
    assert killed.returncode == -9, killed.stderr
    _loads(writer, out)  # whole, whichever it is
    if kill == "before_swap":
        assert _hash(out) == old_hash  # not replaced yet: the old one, untouched
    debris = [p for p in tmp_path.rglob(".*") if _outside_debris(p, tmp_path)]
    assert all(is_staging_debris(p) for p in debris)
    if kill == "after_swap":  # the case that leaves debris: it never blocks the next run
        assert debris
        again = _child(writer, None, paths, seed=2)
        assert again.returncode == 0, again.stderr
        _loads(writer, out)
