"""Every file treefuse reads, mutated as a fuzzer would: a damaged file is bad input (exit 2), never a bug (exit 3).

Each reader is driven the way a command drives it; it may refuse (TreefuseError: exit 2), report a changed
file (GateFailed: exit 1, for `calib verify` only) or, when the mutation left the file meaningful, succeed.
Anything else is a bug. Thousands of cases in all, on tiny files.
"""
from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from fuzz import mutants
from treefuse.errors import GateFailed, TreefuseError


def fuzz(target: Path, reader: Callable[[Path], object], count: int, seed: int, allowed=(TreefuseError,),
         head: int | None = None) -> Counter:
    """Mutate `target` `count` times, call `reader` on each; returns how each ended. Restores `target`."""
    original = target.read_bytes()
    outcomes: Counter = Counter()
    try:
        for trial, how, data in mutants(original, count, seed, head):
            target.write_bytes(data)
            try:
                reader(target)
                outcomes["read"] += 1
            except allowed as exc:
                outcomes[type(exc).__name__] += 1
            except Exception as exc:  # noqa: BLE001 - the point: name the case that escaped
                raise AssertionError(f"{target.name}, trial {trial} ({how}): {type(exc).__name__}: {exc}") from exc
    finally:
        target.write_bytes(original)
    return outcomes


def run_onnx(path: Path) -> None:
    from treefuse.runtimes.backends.registry import make_runner

    with make_runner(f"onnx:{path}", threads=1) as runner:
        runner.describe()
        runner.infer(np.zeros((1, 3, 16, 16), np.float32))


def test_mutated_onnx_models_are_bad_input(onnx_path, tmp_path):
    target = tmp_path / "m.onnx"
    shutil.copyfile(onnx_path, target)
    outcomes = fuzz(target, run_onnx, 300, seed=1)
    outcomes += fuzz(target, run_onnx, 300, seed=2, head=2048)  # the graph and metadata, not only weights
    assert outcomes["TreefuseError"] > 100, outcomes


def test_non_utf8_onnx_metadata_is_one_line_exit_2(onnx_path, tmp_path, capsys):
    from treefuse.cli import main

    data = bytearray(onnx_path.read_bytes())
    value = data.find(b"treefuse.config") + len("treefuse.config") + 4  # inside the JSON that follows the key
    data[value] = 0xFF
    damaged = tmp_path / "damaged.onnx"
    damaged.write_bytes(bytes(data))
    images = tmp_path / "images"
    images.mkdir()
    from PIL import Image
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images / "a.png")
    code = main(["parity", "--ref", f"onnx:{onnx_path}", "--cand", f"onnx:{damaged}", "--images", str(images)])
    err = capsys.readouterr().err
    assert code == 2 and "not valid UTF-8" in err and len(err.strip().splitlines()) == 1, err


def test_mutated_weights_are_bad_input(weights_path, tmp_path):
    from treefuse.checkpoint import load_weights

    target = tmp_path / "w.safetensors"
    shutil.copyfile(weights_path, target)
    outcomes = fuzz(target, load_weights, 400, seed=3)
    outcomes += fuzz(target, load_weights, 400, seed=4, head=1024)  # the JSON header
    assert outcomes["TreefuseError"] > 300, outcomes


@pytest.mark.parametrize("suffix", [".png", ".jpg"])
def test_mutated_images_are_bad_input(tmp_path, suffix):
    from PIL import Image

    from treefuse.images import read_image

    target = tmp_path / f"a{suffix}"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(target)
    outcomes = fuzz(target, read_image, 400, seed=5)
    assert outcomes["TreefuseError"] > 50, outcomes


@pytest.fixture()
def calibration_set(tmp_path) -> Path:
    from PIL import Image

    from treefuse.cli import main

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(images / "a.png")
    assert main(["calib", "build", "--images", str(images), "--count", "1", "--size", "32x32",
                 "--out", str(tmp_path / "calib")]) == 0
    return tmp_path / "calib"


@pytest.mark.parametrize("name", ["images.npy", "manifest.json"])
def test_mutated_calibration_sets_are_bad_input(calibration_set, name):
    from treefuse.calib.store import load_calibration_set, verify_calibration_set

    target = calibration_set / name
    verified = fuzz(target, verify_calibration_set, 400, seed=6, allowed=(TreefuseError, GateFailed))
    verified += fuzz(target, verify_calibration_set, 200, seed=7, allowed=(TreefuseError, GateFailed), head=128)
    loaded = fuzz(target, load_calibration_set, 400, seed=8)
    assert verified["GateFailed"] + verified["TreefuseError"] > 500 and loaded["TreefuseError"] > 300, (verified, loaded)


def test_damaged_npy_header_is_exit_2_not_a_changed_set(calibration_set, capsys):
    from treefuse.cli import main

    tensor = calibration_set / "images.npy"
    data = tensor.read_bytes()
    tensor.write_bytes(data[:10] + b"{'descr': '<f4', 'fortran_order': False, 'shape': (1," + b" " * 60 + b"\n"
                       + data[128:])  # an unclosed tuple: numpy's header parser raises tokenize.TokenError
    code = main(["calib", "verify", str(calibration_set)])
    err = capsys.readouterr().err
    assert code == 2 and "not a readable .npy" in err and len(err.strip().splitlines()) == 1, err
