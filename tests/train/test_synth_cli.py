"""`treefuse synth`: same inputs give identical pairs; bad input is exit 2, one line, nothing written."""
import json

import numpy as np
import pytest

from treefuse.cli import main
from treefuse.images import read_image, write_image


@pytest.fixture
def frames(tmp_path):
    folder = tmp_path / "frames"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_image(folder / f"{name}.png", rng.random((40, 48, 3)).astype(np.float32))
    return folder


def _run(capsys, *argv):
    code = main(["synth", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_renders_paired_folder_with_record_and_is_deterministic(frames, tmp_path, capsys):
    first, second = tmp_path / "p1", tmp_path / "p2"
    assert _run(capsys, "--images", frames, "--out", first, "--count", 3, "--seed", 7)[0] == 0
    assert _run(capsys, "--images", frames, "--out", second, "--count", 3, "--seed", 7)[0] == 0
    names = sorted(p.name for p in (first / "rain").iterdir())
    assert names == ["0000_a.png", "0001_b.png", "0002_a.png"]
    assert names == sorted(p.name for p in (first / "clean").iterdir())
    for sub in ("rain", "clean"):
        for name in names:
            assert (first / sub / name).read_bytes() == (second / sub / name).read_bytes()
    record = json.loads((first / "synth.json").read_text())
    assert record["seed"] == 7 and len(record["pairs"]) == 3 and record["preset"]["name"] == "street"
    assert not np.array_equal(read_image(first / "rain" / names[0]), read_image(first / "rain" / names[2]))
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no staging debris


def test_other_seed_other_rain_and_crop(frames, tmp_path, capsys):
    _run(capsys, "--images", frames, "--out", tmp_path / "s1", "--seed", 1, "--crop", 32)
    _run(capsys, "--images", frames, "--out", tmp_path / "s2", "--seed", 2, "--crop", 32)
    one, two = (read_image(tmp_path / s / "rain" / "0000_a.png") for s in ("s1", "s2"))
    assert one.shape == (32, 32, 3) and not np.array_equal(one, two)


def test_rerun_replaces_an_earlier_synth_output(frames, tmp_path, capsys):
    out = tmp_path / "p"
    _run(capsys, "--images", frames, "--out", out, "--count", 3)
    assert _run(capsys, "--images", frames, "--out", out, "--count", 1)[0] == 0
    assert [p.name for p in (out / "rain").iterdir()] == ["0000_a.png"]


@pytest.mark.parametrize("case", ["missing_images", "empty_images", "count_zero", "bad_crop", "bad_preset",
                                  "out_holds_other", "out_is_file", "broken_frame"])
def test_bad_input_is_exit_2_one_line_nothing_written(case, frames, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--images", frames, "--out", out]
    if case == "missing_images":
        args[1] = tmp_path / "nope"
    elif case == "empty_images":
        (tmp_path / "empty").mkdir()
        args[1] = tmp_path / "empty"
    elif case == "count_zero":
        args += ["--count", 0]
    elif case == "bad_crop":
        args += ["--crop", 5]
    elif case == "bad_preset":
        args += ["--preset", "no-such-preset"]
    elif case == "out_holds_other":
        out.mkdir()
        (out / "holiday.jpg").write_bytes(b"mine")
    elif case == "out_is_file":
        out.write_bytes(b"mine")
    elif case == "broken_frame":
        (frames / "c.png").write_bytes(b"not a png")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    code, out_text, err = _run(capsys, *args)
    assert code == 2 and out_text == ""
    assert err.count("\n") == 1 and err.startswith("treefuse: error: ")
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
