"""docs/quickstart-int8.md runs as written: every command of its journey, in order, on small self-made pairs.

Only sizes and step counts are lowered (options appended, which argparse lets win); the commands themselves
are read from the document, so a changed option or output there fails here.
"""
from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from treefuse.cli import main
from treefuse.images import write_image

DOC = Path(__file__).resolve().parents[2] / "docs" / "quickstart-int8.md"
# Appended to each command: tiny sizes and few steps, so the journey takes seconds, not an hour.
SMALL = {
    ("calib", "build"): ["--count", "2", "--size", "40x40"],
    ("qat",): ["--steps", "2", "--patch", "32", "--batch", "1", "--synthetic-fraction", "0", "--checkpoint-every", "2"],
    ("benchmark",): ["--size", "40x40", "--warmup", "0", "--iters", "1"],
}


def journey_commands() -> list[list[str]]:
    """The `treefuse ...` lines of the journey's bash blocks, in order."""
    section = DOC.read_text().split("## The journey", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.S)
    return [shlex.split(line)[1:] for block in blocks for line in block.splitlines() if line.startswith("treefuse ")]


def write_pairs(folder: Path, seed: int, count: int = 2) -> Path:
    """Smooth scenes with bright streaks: enough structure for the task PSNR to mean something."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:48, 0:64] / 64.0
    for index in range(count):
        phase = rng.uniform(0, 6)
        clean = np.stack([0.3 + 0.4 * cols, 0.2 + 0.5 * rows, 0.5 + 0.2 * np.sin(6 * cols + phase)], axis=-1)
        streaks = (rng.random((48, 64)) > 0.96).astype(np.float32)[..., None] * 0.5
        write_image(folder / "rain" / f"{index + 1:03d}.png", np.clip(clean + streaks, 0, 1).astype(np.float32))
        write_image(folder / "clean" / f"{index + 1:03d}.png", clean.astype(np.float32))
    return folder


def localised(argv: list[str], root: Path, pairs: Path, train_pairs: Path) -> list[str]:
    """The document's placeholders and relative outputs pointed into `root`."""
    names = {"PAIRS": str(pairs), "TRAIN_PAIRS": str(train_pairs)}
    out = [names.get(arg, arg) for arg in argv]
    out = [re.sub(r"^(\w+:)?((calib/|bench/|runs/|m\.).*)$", lambda m: (m.group(1) or "") + str(root / m.group(2)), arg)
           for arg in out]
    for prefix, extra in SMALL.items():
        if tuple(argv[:len(prefix)]) == prefix:
            out += extra
    return out


@pytest.mark.journey  # about 3 minutes on 2 quiet cores, 6 beside a training run: outside `make test`'s budget
def test_the_quickstart_journey_runs_end_to_end(tmp_path, capsys):
    commands = journey_commands()
    assert [argv[0] for argv in commands] == ["calib", "export", "export", "parity", "benchmark", "qat", "export",
                                              "benchmark"]
    pairs, train_pairs = write_pairs(tmp_path / "pairs", 0), write_pairs(tmp_path / "train", 1)
    codes = []
    for argv in commands:
        codes.append(main(localised(argv, tmp_path, pairs, train_pairs)))
        printed = capsys.readouterr()
        assert codes[-1] in (0, 1), f"{argv}: exit {codes[-1]}\n{printed.err}"
        if argv[0] == "export" and codes[-1] == 0:
            assert "checked on" in printed.out and "min output PSNR" in printed.out  # its figures, not just "wrote"
    # The plain post-training export may miss (exit 1), and so may two steps of QAT; the layers kept in float pass,
    # and benchmark exits 0 with a complete table either way.
    assert codes[0] == 0 and codes[2:6] == [0, 0, 0, 0] and codes[7] == 0, codes
    rows = json.loads((tmp_path / "bench" / "benchmark.json").read_text())["rows"]
    verdicts = {(row["format"], row["precision"], row.get("route")): row["verdict"] for row in rows}
    assert verdicts["onnx", "int8", "ptq"] == "pass", verdicts
    assert ("onnx", "int8", "qat") in verdicts or codes[6] == 1, verdicts  # the QAT row, unless its export missed
