"""`make gpu-run` and `make gpu-pack`: the lent-GPU session, tried here on the CPU (DRY_RUN=1) on tiny data."""
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from treefuse.checkpoint import load_weights

ROOT = Path(__file__).resolve().parents[2]
RETURNED = {"summary.json", "log.txt", "cuda-tests.xml", "latency.json", "train-speed.json", "weights.safetensors",
            "gpu-run.tar.gz"}


def _pairs(folder: Path, numbers, shape, rng) -> None:
    for n in numbers:
        clean = rng.integers(0, 256, shape, dtype=np.uint8)
        rain = np.clip(clean.astype(int) + rng.integers(0, 80, shape), 0, 255).astype(np.uint8)
        for sub, image in (("rain", rain), ("clean", clean)):
            (folder / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / sub / f"{n:03d}.png")


@pytest.fixture
def gpu_data(tmp_path):
    """What `make gpu-pack` copies, in miniature: Rain100H-style pairs, clean photos, heavy-rain-sample5."""
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    _pairs(data / "rain100h-train50", [1, 2, 3, 41, 42], (64, 64, 3), rng)
    _pairs(data / "heavy-rain-sample5", [1, 2], (40, 56, 3), rng)
    for group in ("Kodak24", "Urban100"):
        (data / "clean" / group).mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data / "clean" / "Kodak24" / "a.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data / "clean" / "Urban100" / "img_006.png")
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data / "clean" / "Urban100" / "img_007.png")
    return data


needs_make = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed here")


def gpu_run(tmp_path, out, **env):
    variables = {"OUT": str(out), "DRY_RUN": "1", "GPU_PYTHON": sys.executable, "GPU_WORK": str(tmp_path / "work"),
                 **env}
    return subprocess.run(["make", "-s", "gpu-run", *[f"{k}={v}" for k, v in variables.items()]], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@needs_make
def test_dry_run_writes_every_result_and_a_second_call_resumes(tmp_path, gpu_data):
    out = tmp_path / "out1"
    first = gpu_run(tmp_path, out, GPU_DATA=gpu_data, GPU_SECONDS=400, TRAIN_SECONDS=8)
    assert first.returncode == 0, first.stdout + first.stderr + (out / "log.txt").read_text()
    assert {p.name for p in out.iterdir()} == RETURNED  # at most 8 files come back from a device
    summary = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in summary["steps"]] == ["cuda-tests", "latency", "train-speed", "train"]
    assert all(s["rc"] == 0 for s in summary["steps"]) and summary["dry_run"] and summary["exit_code"] == 0
    assert summary["cuda_tests"]["tests"] >= 1 and summary["cuda_tests"]["failures"] == 0  # skipped here: no CUDA
    sweep = json.loads((out / "latency.json").read_text())
    assert {tuple(c["size"]) for c in sweep["cells"]} == {(48, 64), (72, 96)} and len(sweep["cells"]) == 6
    assert len(summary["latency_p50_ms"]) == 6
    assert "fp32" in json.loads((out / "train-speed.json").read_text())["it_per_s"]
    trained = summary["training"]
    assert trained["step"] >= 4 and trained["steps_this_call"] == trained["step"]
    weights = load_weights(out / "weights.safetensors")
    assert weights.provenance["steps"] == trained["step"] and weights.provenance["kind"] == "chunk"
    with tarfile.open(out / "gpu-run.tar.gz") as archive:
        names = archive.getnames()
    assert "gpu-run/config.yaml" in names and any(n.startswith("gpu-run/checkpoints/step_") for n in names)

    again = tmp_path / "out2"
    second = gpu_run(tmp_path, again, GPU_DATA=gpu_data, GPU_SECONDS=200, TRAIN_SECONDS=8, STEPS="train",
                     RESUME=out / "gpu-run.tar.gz")
    assert second.returncode == 0, second.stdout + second.stderr + (again / "log.txt").read_text()
    resumed = json.loads((again / "summary.json").read_text())
    assert [s["name"] for s in resumed["steps"]] == ["train"] and resumed["resumed_from"]
    assert resumed["training"]["step"] == trained["step"] + resumed["training"]["steps_this_call"]
    assert resumed["training"]["steps_this_call"] >= 4
    assert load_weights(again / "weights.safetensors").provenance["steps"] == resumed["training"]["step"]


@needs_make
def test_a_missing_data_folder_is_one_line_before_any_step(tmp_path, gpu_data):
    shutil.rmtree(gpu_data / "clean")
    result = gpu_run(tmp_path, tmp_path / "out", GPU_DATA=gpu_data)
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len([l for l in lines if l.startswith("treefuse: error:")]) == 1
    assert "no clean under" in result.stderr and "make gpu-pack" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("env, message", [({"STEPS": "train,fly"}, "STEPS must name"),
                                          ({"GPU_SECONDS": "30"}, "leaves no time to train"),
                                          ({"OUT": ""}, "OUT is not set")])
def test_bad_settings_are_refused_in_one_line(tmp_path, gpu_data, env, message):
    result = subprocess.run([sys.executable, str(ROOT / "gpu" / "run.py")], capture_output=True, text=True,
                            env={**os.environ, "OUT": str(tmp_path / "out"), "GPU_DATA": str(gpu_data), **env})
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_source_tree_imports_without_an_installed_treefuse():
    """The GPU machine has no install: the finder alone must map treefuse.<stage> onto its folder."""
    code = ("import sys; "
            "sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in type(f).__module__.lower()]; "
            "[sys.modules.pop(m) for m in list(sys.modules) if m.startswith('treefuse')]; "
            f"sys.path.insert(0, {str(ROOT / 'gpu')!r}); import source; source.use_source_tree(); "
            "import treefuse.train.train_config as c, treefuse.calib.store as s; print(c.__file__); print(s.__file__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(ROOT / "train" / "train_config.py"), str(ROOT / "calib" / "store.py")]


def test_pack_copies_the_fixed_selection_and_pure_python_packages(tmp_path, gpu_data):
    result = subprocess.run([sys.executable, str(ROOT / "gpu" / "pack.py"), "--data", str(gpu_data),
                             "--into", str(tmp_path / "pack")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    pack = tmp_path / "pack"
    assert sorted(p.name for p in (pack / "data" / "rain100h-train50" / "rain").iterdir()) == \
        ["001.png", "002.png", "003.png", "041.png", "042.png"]
    photos = sorted(str(p.relative_to(pack / "data" / "clean")) for p in (pack / "data" / "clean").rglob("*.png"))
    assert photos == ["Kodak24/a.png", "Urban100/img_007.png"]  # img_006 is held out of all training
    assert (pack / "site" / "png.py").is_file()
    assert 'carry:     [".gpu"]' in result.stdout and "timeout_s: 570" in result.stdout


def _run_module():
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpu_run", ROOT / "gpu" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_run"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_eager_fallback_resumes_a_run_that_reached_a_checkpoint_and_restarts_one_that_did_not(tmp_path):
    run = _run_module()
    settings = run.settings_from_env({"OUT": str(tmp_path / "out"), "GPU_WORK": str(tmp_path / "work")})
    first = run.train_command(settings, settings.work)
    assert "--config" in first and "speed.cuda_graph=false" not in first  # paper-gpu.yaml's CUDA graph stays on
    fresh = run.train_command(settings, settings.work, eager=True)
    assert "--config" in fresh and fresh[-1] == "speed.cuda_graph=false"
    (settings.work / "gpu-run" / "checkpoints" / "step_000000020").mkdir(parents=True)
    resumed = run.train_command(settings, settings.work, eager=True)
    assert resumed[resumed.index("--resume") + 1] == str(settings.work / "gpu-run") and "--config" not in resumed
    assert resumed[-1] == "speed.cuda_graph=false"
