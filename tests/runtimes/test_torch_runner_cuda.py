"""PyTorch runner options: CPU FP32 unchanged, bf16/channels_last on CPU, and the CUDA paths on a GPU."""
import numpy as np
import pytest
import torch

from treefuse.errors import TreefuseError
from treefuse.runtimes.backends.registry import make_runner

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")

from backend_helpers import run_backend as _run  # noqa: E402


def test_cpu_fp32_default_is_unchanged(weights_path, image):
    from treefuse.checkpoint import load_weights

    output, facts = _run(f"torch:{weights_path}", image)
    with torch.inference_mode():
        expected = load_weights(weights_path).model.eval()(torch.from_numpy(image)).numpy()
    assert np.array_equal(output, expected)
    assert facts["precision"] == "fp32" and facts["device"] == "cpu" and "channels_last" not in facts


def test_bf16_and_channels_last_on_cpu_stay_close(weights_path, image):
    reference, _ = _run(f"torch:{weights_path}", image)
    last, facts = _run(f"torch:{weights_path}?channels_last=true", image)
    assert np.abs(last - reference).max() < 1e-5 and facts["channels_last"]
    bf16, facts = _run(f"torch:{weights_path}?dtype=bf16", image)
    assert bf16.dtype == np.float32 and 0 < np.abs(bf16 - reference).max() < 0.1 and facts["precision"] == "bf16"


def test_bad_options_are_refused_clearly(weights_path):
    with pytest.raises(TreefuseError, match="dtype must be one of"):
        make_runner(f"torch:{weights_path}?dtype=int4")
    with pytest.raises(TreefuseError, match="cuda_graph needs device=cuda"):
        make_runner(f"torch:{weights_path}?cuda_graph=true")
    if not torch.cuda.is_available():
        with pytest.raises(TreefuseError, match="CUDA is not available"):
            make_runner(f"torch:{weights_path}?device=cuda")


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize("options", ["dtype=fp16", "dtype=bf16,channels_last=true", "dtype=fp16,cuda_graph=true",
                                     "dtype=fp16,channels_last=true,compile=true"])
def test_cuda_options_match_cpu_fp32(weights_path, image, options):
    reference, _ = _run(f"torch:{weights_path}", image)
    with make_runner(f"torch:{weights_path}?device=cuda,{options}") as runner:
        first, second = runner.infer(image), runner.infer(image)  # a CUDA graph is captured, then replayed
    assert np.abs(first - reference).max() < 0.05 and np.array_equal(first, second)


def test_fold_option_runs_the_exactly_folded_network(weights_path):
    batch = np.random.default_rng(3).random((1, 3, 24, 40), dtype=np.float32)
    with make_runner(f"torch:{weights_path}") as plain, make_runner(f"torch:{weights_path}?fold=true") as folded:
        assert np.abs(plain.infer(batch) - folded.infer(batch)).max() < 1e-5
        assert folded.describe()["fold"] is True
