"""End-to-end training runs on a tiny config: exact resume, run-folder contents, bad input."""
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from safetensors.torch import load_file

from treefuse.checkpoint import load_weights
from treefuse.cli import main
from treefuse.errors import TreefuseError
from treefuse.train.session import learning_sections_sha256, resume_session, start_session, train
from treefuse.train.train_config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def data(tmp_path):
    rng = np.random.default_rng(0)
    folder, photos = tmp_path / "pairs", tmp_path / "photos"
    for n in range(1, 5):
        clean = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
        rain = np.clip(clean.astype(int) + rng.integers(0, 80, clean.shape), 0, 255).astype(np.uint8)
        for sub, image in (("rain", rain), ("clean", clean)):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / sub / f"{n:03d}.png")
    photos.mkdir()
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(photos / "p.png")
    return folder, photos


def tiny_config(folders, steps=6, **sections):
    folder, photos = folders
    raw = {
        "model": {"channels": 4, "blocks": 2},
        "data": {"train_dirs": [str(folder)], "train_range": "001-003", "synthetic_dir": str(photos),
                 "synthetic_fraction": 0.5, "val_dir": str(folder), "val_range": "004", "val_name": "tiny:004",
                 "patch_size": 24, "batch_size": 2},
        "optim": {"steps": steps, "lr_milestones": [steps // 3, 2 * steps // 3]},
        "speed": {"device": "cpu", "precision": "fp32", "threads": 1},
        "run": {"log_every": 1, "validate_every": 3, "checkpoint_every": 2, "keep_checkpoints": 2},
    }
    for section, values in sections.items():
        raw[section].update(values)
    return TrainConfig.from_dict(raw)


def weights(path):
    return load_file(str(path))


def assert_identical(a, b):
    tensors_a, tensors_b = weights(a), weights(b)
    assert tensors_a.keys() == tensors_b.keys()
    for name in tensors_a:
        assert torch.equal(tensors_a[name], tensors_b[name]), name


class Interrupted(Exception):
    pass


def _interrupt_at(step):
    def hook(current):
        if current == step:
            raise Interrupted
    return hook


@pytest.mark.parametrize("kill_at", [1, 3, 4])
def test_resume_is_bit_identical(tmp_path, data, kill_at):
    config = tiny_config(data)
    train(start_session(config, tmp_path / "whole"), progress=False)
    broken = start_session(config, tmp_path / "broken")
    with pytest.raises(Interrupted):
        train(broken, progress=False, on_step=_interrupt_at(kill_at))
    resumed = resume_session(tmp_path / "broken", [])
    assert resumed.trainer.step == kill_at // 2 * 2  # back at the last checkpoint
    train(resumed, progress=False)
    assert_identical(tmp_path / "whole" / "final.safetensors", tmp_path / "broken" / "final.safetensors")
    steps_logged = [e["step"] for e in resumed.run.read_log() if "loss" in e]
    assert steps_logged == list(range(1, 7))  # the killed steps were not logged twice


@pytest.mark.parametrize("speed", [{}, {"precision": "bf16", "fold": True, "channels_last": True}])
def test_resume_in_chunks_matches_one_run(tmp_path, data, speed):
    config = tiny_config(data, speed={"device": "cpu", "precision": "fp32", "threads": 1, **speed})
    train(start_session(config, tmp_path / "whole"), progress=False)
    train(start_session(config, tmp_path / "chunks"), stop_after=3, progress=False)
    for _ in range(2):
        train(resume_session(tmp_path / "chunks", []), stop_after=2, progress=False)
    assert_identical(tmp_path / "whole" / "final.safetensors", tmp_path / "chunks" / "final.safetensors")


def test_patches_cut_on_the_device_train_the_same_weights(tmp_path, data):
    pooled = {"synthetic_pool": 3}
    config = tiny_config(data, data=pooled)
    train(start_session(config, tmp_path / "host"), progress=False)
    on_device = tiny_config(data, data=pooled, speed={"device": "cpu", "precision": "fp32", "threads": 1,
                                                      "data_on_device": True})
    train(start_session(on_device, tmp_path / "device"), stop_after=3, progress=False)
    train(resume_session(tmp_path / "device", ["speed.data_on_device=false"]), progress=False)
    assert_identical(tmp_path / "host" / "final.safetensors", tmp_path / "device" / "final.safetensors")
    live = tmp_path / "live"
    train(start_session(tiny_config(data), live), progress=False)  # per-patch rendering: other batches
    assert not torch.equal(weights(live / "final.safetensors")["head.weight"],
                           weights(tmp_path / "host" / "final.safetensors")["head.weight"])


def test_cuda_graph_on_the_cpu_is_a_one_line_refusal(tmp_path, data):
    config = tiny_config(data, speed={"device": "cpu", "precision": "fp32", "cuda_graph": True})
    with pytest.raises(TreefuseError, match="speed.cuda_graph needs a CUDA device"):
        start_session(config, tmp_path / "run")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device; none on this machine")
def test_cuda_graph_step_trains_like_the_eager_step_and_resumes(tmp_path, data):
    cuda = {"device": "cuda", "precision": "fp32", "data_on_device": True}
    pooled = {"synthetic_pool": 3}
    train(start_session(tiny_config(data, data=pooled, speed=cuda), tmp_path / "eager"), progress=False)
    graphed = tiny_config(data, data=pooled, speed={**cuda, "cuda_graph": True})
    train(start_session(graphed, tmp_path / "graph"), stop_after=3, progress=False)
    train(resume_session(tmp_path / "graph", []), progress=False)
    eager, captured = weights(tmp_path / "eager" / "final.safetensors"), weights(tmp_path / "graph" / "final.safetensors")
    for name in eager:
        assert torch.allclose(eager[name], captured[name], atol=1e-5), name


def test_runs_from_before_synthetic_pool_and_street_rain_existed_still_resume(data):
    config = tiny_config(data)
    learned = {k: v for k, v in config.to_dict().items() if k not in ("speed", "run")}
    for key in ("synthetic_pool", "synthetic_exclude", "street_fraction", "rain_preset",
                "street_dir", "street_exclude", "street_frame_fraction", "street_long_side"):
        del learned["data"][key]
    for key in ("activation_noise", "noise_calibration"):
        del learned["optim"][key]
    before = hashlib.sha256(json.dumps(learned, sort_keys=True).encode()).hexdigest()
    assert learning_sections_sha256(config) == before
    for changed in ({"synthetic_pool": 2}, {"street_fraction": 0.5}, {"synthetic_exclude": ["p.png"]},
                    {"street_frame_fraction": 0.5}, {"street_long_side": 320}):
        assert learning_sections_sha256(tiny_config(data, data=changed)) != before, changed


def test_run_folder_contents_and_provenance(tmp_path, data):
    config = tiny_config(data)
    summary = train(start_session(config, tmp_path / "run"), progress=False)
    run = tmp_path / "run"
    assert TrainConfig.from_dict(yaml.safe_load((run / "config.yaml").read_text())) == config
    assert len(list((run / "checkpoints").iterdir())) == 2  # keep_checkpoints
    log = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert {"step", "loss", "lr", "it_per_s"} <= set(log[0])
    validations = [e for e in log if "val_psnr_y_db" in e]
    assert [e["step"] for e in validations] == [3, 6] and all("val_ssim_y" in e for e in validations)
    assert [e["lr"] for e in log if "lr" in e] == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])
    loaded = load_weights(run / "final.safetensors")
    record = loaded.provenance
    manifest = json.loads((run / "data_manifest.json").read_text())
    assert record["steps"] == 6 and record["data_manifest_sha256"] == manifest["sha256"]
    assert record["config"] == config.to_dict() and record["device"] and "train_seconds" in record
    assert load_weights(run / "best.safetensors").provenance["best_validation"] == summary["best"]


def test_corrupt_newest_checkpoint_falls_back_to_an_older_one(tmp_path, data):
    config = tiny_config(data)
    train(start_session(config, tmp_path / "whole"), progress=False)
    session = start_session(config, tmp_path / "run")
    with pytest.raises(Interrupted):
        train(session, progress=False, on_step=_interrupt_at(5))
    newest = sorted((tmp_path / "run" / "checkpoints").iterdir())[-1]
    data_file = newest / "tensors.safetensors"
    data_file.write_bytes(data_file.read_bytes()[:-7] + b"garbage")
    (tmp_path / "run" / "checkpoints" / ".step_000000006.x.tmp").mkdir()  # a staging dir left by a kill
    resumed = resume_session(tmp_path / "run", [])
    assert resumed.trainer.step == 2
    train(resumed, progress=False)
    assert_identical(tmp_path / "whole" / "final.safetensors", tmp_path / "run" / "final.safetensors")


def _write_config(tmp_path, config):
    path = tmp_path / "tiny.yaml"
    path.write_text(config.to_yaml())
    return path


def test_cli_trains_and_refuses_to_overwrite(tmp_path, data, capsys):
    config_path = _write_config(tmp_path, tiny_config(data, steps=2))
    assert main(["train", "--config", str(config_path), "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert load_weights(tmp_path / "run" / "final.safetensors").provenance["steps"] == 2
    before = (tmp_path / "run" / "final.safetensors").read_bytes()
    assert main(["train", "--config", str(config_path), "--out", str(tmp_path / "run")]) == 2
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "run" / "final.safetensors").read_bytes() == before


@pytest.mark.parametrize("args, words", [
    (["--set", "data.train_dirs=[/nonexistent/data]"], "data folder not found"),
    (["--set", "optim.bogus=1"], "unknown key"),
    (["--set", "data.val_range=003"], "also a training pair"),
])
def test_cli_bad_input_is_exit_2_and_leaves_nothing(tmp_path, data, capsys, args, words):
    config_path = _write_config(tmp_path, tiny_config(data))
    out = tmp_path / "run"
    assert main(["train", "--config", str(config_path), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert words in err and err.count("\n") == 1
    assert not out.exists()


def test_resume_refusals(tmp_path, data, capsys):
    config = tiny_config(data)
    train(start_session(config, tmp_path / "run"), stop_after=2, progress=False)
    (tmp_path / "notarun").mkdir()
    assert main(["train", "--resume", str(tmp_path / "notarun")]) == 2
    assert "not a treefuse training run" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path / "run"), "--set", "optim.lr=0.5"]) == 2
    assert "different config (optim.lr)" in capsys.readouterr().err
    config_file = tmp_path / "run" / "config.yaml"
    config_file.write_text(config_file.read_text().replace("seed: 0", "seed: 1"))
    assert main(["train", "--resume", str(tmp_path / "run")]) == 2
    assert "differs from the config its checkpoints" in capsys.readouterr().err
    assert not (tmp_path / "run" / "final.safetensors").exists()


@pytest.mark.slow
def test_kill_9_then_resume_is_bit_identical(tmp_path, data):
    config = tiny_config(data, steps=40)
    train(start_session(config, tmp_path / "whole"), progress=False)
    config_path = _write_config(tmp_path, config)
    out = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "treefuse", "train", "--config", str(config_path),
                                "--out", str(out), "--no-progress"], cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "checkpoints").is_dir() and len(list((out / "checkpoints").glob("step_*"))) >= 1:
            break
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL) if process.poll() is None else None
    process.wait()
    assert main(["train", "--resume", str(out), "--no-progress"]) == 0
    assert_identical(tmp_path / "whole" / "final.safetensors", out / "final.safetensors")


def test_init_weights_start_from_a_checkpoint_and_refuse_another_shape(tmp_path, data, capsys):
    config = tiny_config(data, steps=2)
    train(start_session(config, tmp_path / "first"), progress=False)
    first = tmp_path / "first" / "final.safetensors"
    session = start_session(tiny_config(data, steps=2, optim={"init_weights": str(first)}), tmp_path / "second")
    assert all(torch.equal(v, weights(first)[k]) for k, v in session.trainer.model.state_dict().items())
    manifest = json.loads((tmp_path / "second" / "data_manifest.json").read_text())
    assert manifest["files"]["init_weights"][0]["path"] == str(first)
    bad = _write_config(tmp_path, tiny_config(data, model={"channels": 8, "blocks": 2},
                                              optim={"init_weights": str(first)}))
    assert main(["train", "--config", str(bad), "--out", str(tmp_path / "third")]) == 2
    assert "holds a model" in capsys.readouterr().err


@pytest.mark.slow
def test_torchrun_two_gloo_processes_train_and_resume(tmp_path, data, capsys):
    config_path = _write_config(tmp_path, tiny_config(data, steps=4))
    out = tmp_path / "ddp"

    def torchrun(*args):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                   "-m", "treefuse", "train", "--no-progress", *args]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)

    first = torchrun("--config", str(config_path), "--out", str(out), "--chunk", "2")
    assert first.returncode == 0, first.stderr[-2000:]
    assert main(["train", "--resume", str(out)]) == 2  # one process cannot continue a two-process run
    assert "trained by 2 process(es)" in capsys.readouterr().err
    second = torchrun("--resume", str(out))
    assert second.returncode == 0, second.stderr[-2000:]
    record = load_weights(out / "final.safetensors").provenance
    assert record["processes"] == 2 and record["steps"] == 4
    assert [e["step"] for e in json.loads("[" + ",".join(
        (out / "metrics.jsonl").read_text().splitlines()) + "]") if "loss" in e] == [1, 2, 3, 4]


def test_benchmark_prints_fp32_and_bf16_side_by_side(capsys, tmp_path):
    tiny = ["model.blocks=2", "model.channels=4", "data.patch_size=24", "data.batch_size=2", "speed.threads=1"]
    args = ["train", "--benchmark", "--bench-steps", "1", "--json", str(tmp_path / "b.json")]
    assert main(args + [x for s in tiny for x in ("--set", s)]) == 0
    out = capsys.readouterr().out
    assert "device:" in out and "cpu bf16:" in out
    rates = {line.split("  ")[1].strip(): line for line in out.splitlines() if "it/s" in line}
    assert {"fp32", "bf16", "bf16 fold channels_last"} <= set(rates)
    cuts = [line for line in out.splitlines() if line.endswith(" ms")]
    assert len(cuts) == 4 and "cpu, 50% from a rendered pool" in out
    assert all(float(line.split()[-2]) > 0 for line in cuts)
    record = json.loads((tmp_path / "b.json").read_text())
    assert record["it_per_s"]["fp32"] > 0 and len(record["batch_ms"]) == 4 and record["provenance"]["tool_versions"]


def test_benchmark_reports_a_variant_this_machine_cannot_compile_and_measures_the_rest(capsys, tmp_path, monkeypatch):
    def without_a_compiler(network, **options):
        def fail(*args, **kwargs):
            raise RuntimeError("inductor: no working C compiler found")
        return fail

    monkeypatch.setattr(torch, "compile", without_a_compiler)  # the library boundary: torch.compile itself
    tiny = ["model.blocks=2", "model.channels=4", "data.patch_size=24", "data.batch_size=2", "speed.threads=1",
            "speed.compile=true"]
    args = ["train", "--benchmark", "--bench-steps", "1", "--json", str(tmp_path / "b.json")]
    assert main(args + [x for s in tiny for x in ("--set", s)]) == 0
    record = json.loads((tmp_path / "b.json").read_text())
    assert set(record["failed"]) == {"fp32 compile", "bf16 fold channels_last compile"}
    assert all("no working C compiler" in message for message in record["failed"].values())
    assert record["it_per_s"]["fp32"] > 0 and not set(record["failed"]) & set(record["it_per_s"])
    assert "FAILED on this machine" in capsys.readouterr().out
