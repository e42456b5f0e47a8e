"""`treefuse qat` and `treefuse export onnx --precision int8 --qat` end to end on a tiny network and tiny pairs."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from treefuse.cli import main
from treefuse.qat_run import read_learned

from media import write_images


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    from treefuse.calib.build import build_calibration_set

    root = tmp_path_factory.mktemp("calib")
    return build_calibration_set(write_images(root / "images", 3), root / "set", 3, (32, 32), seed=0)


def qat_args(weights, pairs, calib, out, steps="3"):
    return ["qat", "--weights", str(weights), "--data", str(pairs), "--calib", str(calib), "--steps", steps,
            "--patch", "16", "--batch", "1", "--synthetic-fraction", "0", "--checkpoint-every", "2", "--out", str(out)]


def test_qat_runs_resumes_and_exports(tiny_weights, paired_dir, calib_dir, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*qat_args(tiny_weights, paired_dir, calib_dir, run), "--chunk", "2"]) == 0
    assert json.loads((run / "qat.json").read_text())["weight_bits"] == 7
    assert main(["qat", "--resume", str(run)]) == 0
    assert "treefuse export onnx --precision int8 --qat" in capsys.readouterr().out
    out = tmp_path / "m.int8.onnx"
    assert main(["export", "onnx", "--precision", "int8", "--qat", str(run), "--out", str(out)]) == 0
    provenance = json.loads({p.key: p.value for p in onnx.load(str(out)).metadata_props}["treefuse_provenance"])
    assert provenance["qat"]["step"] == 3 and provenance["qat"]["run"] == str(run)
    batch = np.random.default_rng(0).random((1, 3, 24, 32), dtype=np.float32)
    assert np.isfinite(ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]).all()


def test_qat_refuses_bad_usage_in_one_line(tiny_weights, paired_dir, calib_dir, tmp_path, capsys):
    assert main(["qat", "--steps", "3", "--out", str(tmp_path / "r")]) == 2  # no --data
    assert main(["qat", "--resume", str(tmp_path)]) == 2  # not a run
    assert main(["qat", "--resume", str(tmp_path), "--steps", "5"]) == 2  # settings live in the run
    assert main(["export", "onnx", "--precision", "int8", "--qat", str(tmp_path / "none"), "--calib", str(calib_dir),
                 "--out", str(tmp_path / "m.onnx")]) == 2  # --qat with --calib
    assert main(["export", "onnx", "--precision", "int8", "--qat", str(tmp_path), "--out", str(tmp_path / "m.onnx")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("treefuse:")]
    assert len(errors) == 5 and all("Traceback" not in e for e in errors)
    assert not (tmp_path / "m.onnx").exists()



def test_a_start_that_fails_midway_leaves_no_run_folder(tiny_weights, paired_dir, calib_dir, tmp_path, monkeypatch):
    from treefuse.errors import TreefuseError
    from treefuse.export.onnx import qat_export as onnx_qat_export

    def fail(*args):
        raise TreefuseError("calibration failed")

    monkeypatch.setattr(onnx_qat_export, "make_qat_base", fail)
    assert main(qat_args(tiny_weights, paired_dir, calib_dir, tmp_path / "run")) == 2
    assert list(tmp_path.iterdir()) == []


def test_a_run_without_recipe_flags_takes_its_targets_measured_recipe(tiny_weights, paired_dir, calib_dir, tmp_path):
    from treefuse.qat_run import TARGETS
    from treefuse.train.train_config import load_train_config

    run = tmp_path / "run"
    assert main(["qat", "--weights", str(tiny_weights), "--data", str(paired_dir), "--calib", str(calib_dir),
                 "--patch", "16", "--batch", "1", "--synthetic-fraction", "0", "--out", str(run), "--chunk", "1"]) == 0
    settings = json.loads((run / "qat.json").read_text())
    recipe = TARGETS["ort-qdq"].defaults
    assert (settings["distill"], settings["scale_lr_factor"]) == (recipe.distill, recipe.scale_lr_factor) == (1.0, 0.0)
    assert load_train_config(run / "config.yaml").optim.steps == recipe.steps
    learned, _ = read_learned(run)
    multipliers = [value for key, value in learned.items() if key.startswith("multipliers.")]
    assert multipliers and all(torch.equal(m, torch.ones_like(m)) for m in multipliers)  # calibrated scales kept


@pytest.mark.parametrize("field, value", [("distill", "x"), ("distill", 1.5), ("scale_lr_factor", None),
                                          ("freeze_observers_step", -1), ("freeze_observers_step", 2.5)])
def test_a_resumed_run_with_a_damaged_recipe_is_one_line_exit_2(tiny_weights, paired_dir, calib_dir, tmp_path, capsys,
                                                                 field, value):
    run = tmp_path / "run"
    assert main([*qat_args(tiny_weights, paired_dir, calib_dir, run), "--chunk", "1"]) == 0
    settings = json.loads((run / "qat.json").read_text())
    settings[field] = value
    (run / "qat.json").write_text(json.dumps(settings))
    capsys.readouterr()
    assert main(["qat", "--resume", str(run)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and "bad recipe" in errors[0]


def test_resume_refuses_recipe_flags(tmp_path, capsys):
    assert main(["qat", "--resume", str(tmp_path), "--distill", "0.5"]) == 2
    assert "--resume takes only --chunk" in capsys.readouterr().err
