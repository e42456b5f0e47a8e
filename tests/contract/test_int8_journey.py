"""A newcomer's INT8 journey (issue 33): each hole it showed, closed and kept closed, on a tiny network and tiny pairs."""
from __future__ import annotations

import io
import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from treefuse.cli import main

from media import write_images


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    from treefuse.calib.build import build_calibration_set

    root = tmp_path_factory.mktemp("calib")
    return build_calibration_set(write_images(root / "images", 3), root / "set", 3, (32, 32), seed=0)


@pytest.fixture(scope="module")
def train_pairs(tmp_path_factory):
    """Pairs to fine-tune on, other than the judged `paired_dir`."""
    root = tmp_path_factory.mktemp("train")
    write_images(root / "clean", 2, seed=5)
    write_images(root / "rain", 2, seed=6)
    return root


def fast_qat(*argv: str) -> list[str]:
    """A QAT command made quick: few steps on small patches (argparse lets the last value win)."""
    return [*argv, "--steps", "2", "--patch", "16", "--batch", "1", "--synthetic-fraction", "0"]


def test_default_names_the_shipped_weights(tmp_path, monkeypatch):
    from treefuse.checkpoint import DEFAULT_WEIGHTS, resolve_weights
    from treefuse.cli import build_parser

    from treefuse.runtimes.backends.registry import make_runner

    assert resolve_weights("default") == DEFAULT_WEIGHTS
    assert make_runner("torch:default").path == DEFAULT_WEIGHTS  # what parity --ref torch:default runs
    monkeypatch.setattr(sys, "argv", ["treefuse", "export"])  # the parser loads only the command asked for
    args = build_parser().parse_args(["export", "onnx", "--weights", "default", "--out", "m.onnx"])
    assert args.weights == DEFAULT_WEIGHTS
    monkeypatch.chdir(tmp_path)
    (tmp_path / "default").write_bytes(b"mine")  # a file of that name is the user's, never swapped for ours
    assert resolve_weights("default") == Path("default")


def test_qat_without_its_clean_photos_says_which_option_fixes_it(tiny_weights, paired_dir, tmp_path, monkeypatch,
                                                                capsys):
    from treefuse.cli import qat_cmd

    monkeypatch.chdir(tmp_path)  # outside the repository, as a user of an installed treefuse is
    monkeypatch.setattr(qat_cmd, "DEFAULT_SYNTHETIC_DIR", Path("../no-such-shared/clean"))
    assert main(["qat", "--weights", str(tiny_weights), "--data", str(paired_dir), "--steps", "2", "--out", "r"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "--synthetic-dir" in error and "--synthetic-fraction 0" in error
    assert main(["qat", "--weights", str(tiny_weights), "--data", str(paired_dir), "--synthetic-dir", "nowhere",
                 "--out", "r"]) == 2
    assert "--synthetic-dir nowhere is not a folder" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_qat_shows_life_from_its_first_step(tiny_weights, paired_dir, calib_dir, tmp_path, monkeypatch, capsys):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run = tmp_path / "run"
    argv = ["qat", "--weights", str(tiny_weights), "--data", str(paired_dir), "--calib", str(calib_dir),
            "--steps", "4", "--patch", "16", "--batch", "1", "--synthetic-fraction", "0", "--out", str(run)]
    assert main([*argv, "--chunk", "2"]) == 0
    printed = capsys.readouterr().out
    assert re.search(r"step 1/4 loss [\d.]+ \([\d.]+ it/s, \d+ s left in this chunk\)", printed), printed
    assert json.loads((run / "metrics.jsonl").read_text().splitlines()[0])["step"] == 1  # not empty until step 10
    assert "QAT" in terminal.getvalue() and "2/4" in terminal.getvalue()  # a bar with its ETA, on a terminal
    assert main(["qat", "--resume", str(run), "--chunk", "1"]) == 0
    assert "step 3/4" in capsys.readouterr().out  # a resumed chunk shows life at once too


def test_calibration_builds_draw_a_bar_only_on_a_terminal(tmp_path, monkeypatch, capsys):
    images = write_images(tmp_path / "images", 2)
    assert main(["calib", "build", "--images", str(images), "--count", "2", "--size", "16x16", "--out",
                 str(tmp_path / "a")]) == 0
    assert capsys.readouterr().err == ""
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["calib", "build", "--images", str(images), "--count", "2", "--size", "16x16", "--out",
                 str(tmp_path / "b")]) == 0
    assert "calibration crops" in terminal.getvalue() and "2/2" in terminal.getvalue()


def test_images_are_named_by_their_files_in_every_message(calib_dir, paired_dir):
    from treefuse.calib.store import load_calibration_set
    from treefuse.export.onnx.sensitivity import judged_samples, load_paired_set
    from treefuse.export.verify import check_samples
    from treefuse.runtimes.measurements.parity import folder_samples, image_set

    sources = [s["file"] for s in load_calibration_set(calib_dir).manifest["sources"]]
    crops, _ = check_samples(calib_dir, None)
    assert [name for name, _, _ in crops] == [f"{file}, calibration crop" for file in sources]
    by_parity = [name for name, _, _ in folder_samples(image_set(paired_dir))]
    assert [name for name, _, _ in judged_samples(load_paired_set(paired_dir), None)[0]] == by_parity
    assert all(name.endswith(".png") and "pair" not in Path(name).name for name in by_parity)


def test_check_figures_name_each_figure_beside_its_gate():
    from treefuse.export.verify import check_figures
    from treefuse.gates import gates_for

    verdict = {"verified_on": "the paired images P", "reference": "PyTorch FP32", "gates": gates_for("int8").to_json(),
               "output_psnr_db": {"min": 41.23, "mean": 45.0},
               "task": {"ref_psnr_db": 24.0, "cand_psnr_db": 23.95, "delta_db": -0.05},
               "worst_image": {"image": "P/rain/004.png", "task_delta_db": -0.2}}
    line = check_figures(verdict)
    assert line == ("checked on the paired images P: min output PSNR 41.2 dB vs PyTorch FP32 (gate >= 35); task PSNR "
                    "23.95 dB, change -0.050 dB mean (gate >= -0.1), worst image P/rain/004.png -0.200 dB "
                    "(gate >= -0.4)")


def test_the_advice_on_a_miss_runs_as_printed(tiny_weights, paired_dir, train_pairs, calib_dir, tmp_path,
                                              monkeypatch, capsys):
    """A post-training miss prints routes, cheapest first, with their recorded costs; the QAT route's commands run."""
    from treefuse import route_costs
    from treefuse.gates import MAX_PSNR_DB, Gates

    with monkeypatch.context() as impossible:  # gates no INT8 model meets: the miss a camera engineer first sees
        impossible.setattr("treefuse.gates.gates_for", lambda precision: Gates(MAX_PSNR_DB, 0.0, precision=precision))
        assert main(["export", "onnx", "--weights", str(tiny_weights), "--precision", "int8", "--calib", str(calib_dir),
                     "--out", str(tmp_path / "m.onnx")]) == 1
    message = capsys.readouterr().err
    assert "image image" not in message and ", calibration crop" in message  # named by file
    float_route, qat_route = message.split("; or ")
    assert "--paired-images PAIRS" in float_route and route_costs.mixed_precision_text() in float_route
    assert route_costs.qat_text(150) in qat_route and "AVX2" in qat_route and "not judge" in qat_route
    qat, export = re.findall(r"`(treefuse [^`]+)`", qat_route)
    places = {"W": str(tiny_weights), "TRAIN_PAIRS": str(train_pairs), "RUN": str(tmp_path / "run")}
    assert main(fast_qat(*[places.get(a, a) for a in shlex.split(qat)[1:]], "--calib", str(calib_dir))) == 0
    argv = [places.get(a, str(tmp_path / a) if a.startswith("m.") else a) for a in shlex.split(export)[1:]]
    capsys.readouterr()
    assert main(argv) == 0  # the command exists as printed (a usage error would be exit 2)
    assert "checked on the calibration set" in capsys.readouterr().out  # an INT8 export prints its check's figures
    # Judging the run on the pairs it trained on is said, before the verdict.
    code = main([*argv[:-2], "--paired-images", str(train_pairs), "--out", str(tmp_path / "again.int8.onnx")])
    assert code in (0, 1) and "warning: 2 judged pair(s)" in capsys.readouterr().out


@pytest.mark.slow  # four benchmark runs
def test_benchmark_judges_int8_on_pairs_and_marks_what_missed(tiny_weights, paired_dir, calib_dir, tmp_path,
                                                             monkeypatch, capsys):
    from treefuse.gates import MAX_PSNR_DB, Gates

    out = tmp_path / "bench"
    argv = ["benchmark", "--weights", str(tiny_weights), "--images", str(paired_dir), "--formats", "onnx",
            "--calib", str(calib_dir), "--size", "24x24", "--warmup", "0", "--iters", "1", "--out", str(out)]
    assert main(argv) == 0
    assert (out / "model.int8.sensitivity.json").is_file()  # the INT8 cell searched its float layers on the pairs
    with monkeypatch.context() as strict:  # parity alone misses: each kept artifact is marked
        strict.setattr("treefuse.runtimes.measurements.parity.gates_for",
                       lambda precision: Gates(MAX_PSNR_DB, 0.0, precision=precision))
        assert main(argv) == 0
        marker = json.loads((out / "model.int8.onnx.gate-failed.json").read_text())
        miss = marker["misses"][0]
        assert miss["verdict"].startswith("FAIL") and miss["gates"]["min_output_psnr_db"] == MAX_PSNR_DB
        printed = capsys.readouterr().out
        assert "missed: onnx int8: fine-tune for it" in printed and "then add --qat RUN to this benchmark" in printed
        assert "--paired-images PAIRS" not in printed  # this benchmark already judged on pairs
        assert main([*argv, "--require-pass", "onnx:int8"]) == 1
    assert main(argv) == 0 and not (out / "model.int8.onnx.gate-failed.json").exists()  # a pass clears the mark


def test_qat_artifacts_do_not_say_qat_twice():
    from treefuse.export.matrix import qat_file_tag

    assert qat_file_tag(Path("runs/qat-xnn")) == "qat-xnn" and qat_file_tag(Path("runs/cam1")) == "qat-cam1"


def test_calib_build_help_explains_and_shows_examples(capsys):
    with pytest.raises(SystemExit):
        main(["calib", "build", "--help"])
    text = capsys.readouterr().out
    assert "Build a calibration set" in text and "examples:" in text and "--paired-images" in text


def test_bundle_latency_is_timed_at_the_frame_size(weights_path, onnx_path, paired_dir, tmp_path):
    argv = ["pack", f"onnx:{onnx_path}", "--ref", f"torch:{weights_path}", "--images", str(paired_dir),
            "--sizes", "16x16", "--count", "1"]
    assert main([*argv, "--out", str(tmp_path / "frame")]) == 0
    assert json.loads((tmp_path / "frame" / "bundle.json").read_text())["bench_size"] == [40, 56]  # not the crop
    assert main([*argv, "--bench-size", "16x24", "--out", str(tmp_path / "crop")]) == 0  # slow emulated devices
    assert json.loads((tmp_path / "crop" / "bundle.json").read_text())["bench_size"] == [16, 24]
