"""Progress bars: drawn on a terminal only (logs get none), and per frame for a single video."""
from __future__ import annotations

import io
import sys

import pytest

from treefuse.cli import main
from treefuse.progress import progress_bar


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_no_bar_when_stderr_is_a_log(capsys):
    for _ in progress_bar(range(3), desc="steps"):
        pass
    assert capsys.readouterr().err == ""


def test_bar_on_a_terminal_unless_switched_off(monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    for _ in progress_bar(range(3), desc="steps", file=terminal):
        pass
    for _ in progress_bar(range(3), enabled=False, desc="quiet", file=terminal):
        pass
    assert "steps" in terminal.getvalue() and "3/3" in terminal.getvalue() and "quiet" not in terminal.getvalue()


def test_commands_print_no_bar_into_logs(world, capsys):
    assert main(["bench", "--backend", f"onnx:{world}/onnx/model.onnx", "--size", "16x16", "--iters", "2"]) == 0
    assert main(["evaluate", "--backend", f"onnx:{world}/onnx/model.onnx", "--data", f"{world}/paired"]) == 0
    assert capsys.readouterr().err == ""


def test_a_single_video_gets_a_bar_per_frame(world, tmp_path, monkeypatch):
    pytest.importorskip("av", reason="PyAV is not installed (pip install 'treefuse[video]')")
    from media import FRAMES, make_video

    source = make_video(tmp_path / "clip.mp4", with_audio=False)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["derain", "--backend", f"onnx:{world}/onnx/model.onnx", str(source), "--out", str(tmp_path / "d")]) == 0
    drawn = terminal.getvalue()
    assert "derain video" in drawn and f"{FRAMES}/{FRAMES}" in drawn and "frame" in drawn
    assert "file/s" not in drawn  # one input: no per-file bar over the per-frame one


def test_a_json_run_draws_no_bar_even_on_a_terminal(world, tmp_path, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    model = f"onnx:{world}/onnx/model.onnx"
    assert main(["evaluate", "--backend", model, "--data", f"{world}/paired", "--json", str(tmp_path / "e.json")]) == 0
    assert terminal.getvalue() == ""  # a script asked for JSON
    assert main(["evaluate", "--backend", model, "--data", f"{world}/paired"]) == 0
    assert "evaluate" in terminal.getvalue()  # the next command, a person's, gets its bar again


def test_a_json_command_silences_bars_for_itself_only(monkeypatch, tmp_path):
    from treefuse.cli import main

    assert main(["info", "--json"]) == 0  # a script's run: no bars while it runs
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    for _ in progress_bar(range(3), desc="later", file=terminal):
        pass
    assert "later" in terminal.getvalue()  # the next work in this process draws its bars again
