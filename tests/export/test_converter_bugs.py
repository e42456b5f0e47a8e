"""A converter that crashes on a valid request is a bug: exit 3 with its traceback, never dressed as bad input."""
from __future__ import annotations

import pytest

from treefuse.cli import main


def crash(*args, **kwargs):
    raise RuntimeError("converter internals went wrong")


@pytest.mark.parametrize("kind, suffix, patched", [
    ("coreml", ".mlpackage", "coremltools.convert"),
    ("executorch", ".pte", "executorch.exir.to_edge_transform_and_lower"),
])
def test_a_crashing_converter_is_exit_3_with_its_traceback(kind, suffix, patched, weights_path, tmp_path, monkeypatch,
                                                           capsys):
    module = pytest.importorskip(patched.rsplit(".", 1)[0], reason=f"{kind} is not installed")
    monkeypatch.setattr(module, patched.rsplit(".", 1)[1], crash)
    code = main(["export", kind, "--weights", str(weights_path), "--out", str(tmp_path / f"m{suffix}")])
    err = capsys.readouterr().err
    assert code == 3, err
    assert "Traceback" in err and "converter internals went wrong" in err
    assert not (tmp_path / f"m{suffix}").exists()
