"""`treefuse calib build|verify|info` end to end on tiny images: exit codes 0, 1, 2."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from treefuse.cli import calib_cmd, main

from media import write_images


def calib_info(argv):
    # Parsed through calib's own parser: the top-level parser also registers an `info` command.
    parser = argparse.ArgumentParser()
    calib_cmd.add_arguments(parser)
    return calib_cmd.run(parser.parse_args(argv))


@pytest.fixture()
def built(tmp_path):
    images = write_images(tmp_path / "images", 4)
    out = tmp_path / "calib"
    assert main(["calib", "build", "--images", str(images), "--count", "3", "--size", "16x24", "--seed", "2",
                 "--out", str(out)]) == 0
    return out


def test_build_verify_info(built, capsys):
    assert main(["calib", "verify", str(built)]) == 0
    assert "intact" in capsys.readouterr().out
    assert calib_info(["info", str(built), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["tensor"]["shape"] == [3, 3, 16, 24]
    assert calib_info(["info", str(built)]) == 0
    assert manifest["sha256"] in capsys.readouterr().out


def test_verify_exit_1_when_changed(built, capsys):
    data = np.load(built / "images.npy")
    np.save(built / "images.npy", data[:2])
    assert main(["calib", "verify", str(built)]) == 1
    assert "changed" in capsys.readouterr().err


def test_verify_exit_2_when_not_a_set(tmp_path, capsys):
    assert main(["calib", "verify", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "not a calibration set" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, message", [
    (["--count", "9"], "fewer than --count"),
    (["--size", "16by24"], "HxW"),
    (["--count", "0"], "positive"),
])
def test_build_bad_input_one_line_exit_2(tmp_path, capsys, extra, message):
    images = write_images(tmp_path / "images", 2)
    assert main(["calib", "build", "--images", str(images), "--out", str(tmp_path / "c"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "c").exists()
