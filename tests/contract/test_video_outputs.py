"""A video derained by a model that gives garbage: exit 2, one line, and no video written."""
from __future__ import annotations

import pytest

from treefuse.cli import main

pytest.importorskip("av", reason="PyAV is not installed (pip install 'treefuse[video]')")


@pytest.mark.parametrize("model", ["nan.onnx", "shape.onnx"])
def test_video_through_a_broken_model_writes_nothing(model, world, tmp_path, capsys):
    from media import make_video

    source = make_video(tmp_path / "clip.mp4", with_audio=False)
    before = source.read_bytes()
    assert main(["derain", "--backend", f"onnx:{world}/onnx/{model}", str(source), "--out", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("treefuse: error: "), err
    assert not (tmp_path / "d").exists() and source.read_bytes() == before
