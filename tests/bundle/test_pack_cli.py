"""`treefuse pack` on the command line: one line and exit 2 for what a user must fix."""
from __future__ import annotations

import pytest

from treefuse.cli import main


@pytest.mark.parametrize("args, message", [
    (["pack", "torch:{weights}", "--images", "{pairs}", "--out", "{out}"], "pack takes onnx, executorch, litert"),
    (["pack", "onnx:{onnx}", "--images", "{pairs}", "--out", "{out}", "--sizes", "64"], "must be HxW"),
    (["pack", "onnx:{onnx}", "--images", "{pairs}", "--out", "{out}", "--sizes", "500x500"], "smaller than the crop"),
])
def test_pack_refuses_in_one_line(args, message, shipped_weights, committed_onnx, paired_dir, tmp_path, capsys):
    values = {"weights": shipped_weights, "onnx": committed_onnx, "pairs": paired_dir, "out": tmp_path / "b"}
    assert main([arg.format(**values) for arg in args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "b").exists()


def test_pack_then_run_from_the_cli(committed_onnx, paired_dir, tmp_path, capsys, run_bundle):
    out = tmp_path / "cli-bundle"
    assert main(["pack", f"onnx:{committed_onnx}", "--images", str(paired_dir), "--out", str(out),
                 "--sizes", "32x32,full", "--count", "1"]) == 0
    assert "2 golden samples" in capsys.readouterr().out
    done = run_bundle(out, "--iters", "1")
    assert done.returncode == 0 and "passed" in done.stdout, done.stderr
