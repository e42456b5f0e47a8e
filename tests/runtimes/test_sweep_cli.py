"""treefuse sweep: every backend x size measured, parity vs the first backend, hashes and fingerprint recorded."""
import json

import pytest

from treefuse.cli import main
from treefuse.gates import gates_for
from treefuse.runtimes.measurements.memory import measure_peak_memory


@pytest.fixture(scope="module")
def sweep_json(weights_path, onnx_path, paired_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sweep.json"
    assert main(["sweep", "--backend", f"torch:{weights_path}", "--backend", f"onnx:{onnx_path}",
                 "--sizes", "32x48,24x24", "--iters", "2", "--warmup", "0", "--images", str(paired_dir),
                 "--json", str(out)]) == 0
    return out


def test_sweep_measures_every_backend_at_every_size(sweep_json, weights_path):
    result = json.loads(sweep_json.read_text())
    assert result["format"] == "treefuse-sweep-v1" and result["kind"] == "treefuse-sweep"
    cells = {(c["backend"].split(":")[0], tuple(c["size"])) for c in result["cells"]}
    assert cells == {(k, s) for k in ("torch", "onnx") for s in ((32, 48), (24, 24))}
    for cell in result["cells"]:
        assert cell["latency_ms"]["p50"] > 0 and cell["throughput_img_per_s"] > 0
        assert cell["memory"]["peak_rss_mib"] > 10
    torch_facts, onnx_facts = result["backends"]
    from treefuse.files import sha256_file
    assert torch_facts["sha256"] == sha256_file(weights_path) == onnx_facts["artifact"]["source_sha256"]
    assert torch_facts["artifact"]["config"] == onnx_facts["artifact"]["config"] is not None
    assert result["device"]["cpu"]["logical_cores"] >= 1


def test_sweep_parity_is_against_first_backend_with_task_psnr(sweep_json):
    (row,) = json.loads(sweep_json.read_text())["parity"]
    assert row["backend"].startswith("onnx:") and row["reference"].startswith("torch:")
    assert row["output_psnr_db"]["min"] >= gates_for("fp32").min_output_psnr_db and row["passed"]
    assert row["task"]["ref_psnr_db"] > 0 and row["image_count"] == 3


def test_peak_memory_sees_a_large_allocation():
    import numpy as np

    small = measure_peak_memory(lambda: np.ones(1000))
    large = measure_peak_memory(lambda: np.ones((64, 2**20)).sum())  # 512 MiB touched
    if small["rss_method"].startswith("VmHWM"):
        assert large["peak_rss_mib"] - small["peak_rss_mib"] > 400
    assert large["peak_rss_delta_mib"] > 400


@pytest.mark.parametrize("args", [
    ["--sizes", "0x5"], ["--sizes", ","], ["--iters", "0"],
])
def test_sweep_bad_arguments_exit_2_and_write_nothing(weights_path, tmp_path, capsys, args):
    out = tmp_path / "s.json"
    assert main(["sweep", "--backend", f"torch:{weights_path}", *args, "--json", str(out)]) == 2
    assert not out.exists() and "error" in capsys.readouterr().err


def test_backend_options_in_the_spec_reach_the_runner_and_unknown_ones_are_refused(weights_path):
    from treefuse.errors import TreefuseError
    from treefuse.runtimes.backends.registry import make_runner

    runner = make_runner(f"torch:{weights_path}?device=cpu,threads=1")
    assert runner.threads == 1 and str(runner.device) == "cpu"
    with pytest.raises(TreefuseError, match="unknown backend option"):
        make_runner(f"torch:{weights_path}?colour=blue")


def test_onnx_provider_option_and_a_missing_cuda_provider_is_refused(onnx_path):
    import onnxruntime as ort

    from treefuse.errors import TreefuseError
    from treefuse.runtimes.backends.registry import make_runner

    runner = make_runner(f"onnx:{onnx_path}?providers=CPUExecutionProvider")
    assert runner.providers == ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this ONNX Runtime has CUDA; the refusal is for machines without it")
    with pytest.raises(TreefuseError, match="onnxruntime-gpu"):
        make_runner(f"onnx:{onnx_path}?providers=CUDAExecutionProvider+CPUExecutionProvider").activate()
