"""Shared fixtures: tiny weights, tiny images, and the shared data folder when present."""
from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pytest

from treefuse.checkpoint import save_weights
from treefuse.config import ModelConfig
from treefuse.images import write_image
from treefuse.model import TreeFusionNet

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# torch's _pytree speaks when torchao or ExecuTorch load outside treefuse's quiet imports (tests import them
# directly): a logged Enum-registration note and a FutureWarning, which ended up after the run's summary.
PYTREE_DEPRECATION = r"`torch\.utils\._pytree\._register_pytree_node` is deprecated"
logging.getLogger("torch.utils._pytree").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=PYTREE_DEPRECATION, category=FutureWarning)


def pytest_configure(config: pytest.Config) -> None:
    """The same filter inside tests (pytest resets the filters around each one)."""
    config.addinivalue_line("filterwarnings", f"ignore:{PYTREE_DEPRECATION}:FutureWarning")


def synthetic_pair(rng: np.random.Generator, height: int = 40, width: int = 56) -> tuple[np.ndarray, np.ndarray]:
    """A smooth 'clean' image and a streaked 'rainy' copy (enough for I/O and parity tests)."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    clean = np.stack([0.3 + 0.4 * xx, 0.2 + 0.5 * yy, 0.5 + 0.2 * np.sin(6 * xx)], axis=-1).astype(np.float32)
    streaks = (rng.random((height, width)) > 0.97).astype(np.float32)
    rainy = np.clip(clean + 0.5 * np.repeat(streaks[:, :, None], 3, axis=2), 0, 1)
    return rainy, clean


@pytest.fixture(scope="session")
def weights_path(tmp_path_factory) -> Path:
    """Default-config weights with random (seeded) values."""
    import torch

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "w.safetensors"
    return save_weights(TreeFusionNet(ModelConfig()), path, note="test weights, random init")


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A 4-channel, 2-block, dilation-2 model: INT8 and QAT CLI runs on it take seconds."""
    import torch

    torch.manual_seed(1)
    model = TreeFusionNet(ModelConfig(channels=4, blocks=2, dilation_factor=2))
    return save_weights(model, tmp_path_factory.mktemp("w") / "tiny.safetensors", note="tiny test weights")


@pytest.fixture(scope="session")
def paired_dir(tmp_path_factory) -> Path:
    """A paired folder (rain/ + clean/) of three small self-made images."""
    root = tmp_path_factory.mktemp("pairs")
    rng = np.random.default_rng(0)
    for index in range(3):
        rainy, clean = synthetic_pair(rng)
        write_image(root / "rain" / f"{index:03d}.png", rainy)
        write_image(root / "clean" / f"{index:03d}.png", clean)
    return root


@pytest.fixture(scope="session")
def shipped_weights() -> Path:
    """The trained default weights: gates are judged on a network that really derains."""
    from treefuse.checkpoint import DEFAULT_WEIGHTS

    return DEFAULT_WEIGHTS


@pytest.fixture(scope="session")
def onnx_path(weights_path, tmp_path_factory) -> Path:
    from treefuse.export.onnx.exporter import export_onnx

    return export_onnx(weights_path, tmp_path_factory.mktemp("onnx") / "model.onnx")


@pytest.fixture(scope="session")
def shipped_onnx(shipped_weights, tmp_path_factory) -> Path:
    from treefuse.export.onnx.exporter import export_onnx

    return export_onnx(shipped_weights, tmp_path_factory.mktemp("onnx") / "shipped.onnx")


@pytest.fixture(scope="session")
def image() -> np.ndarray:
    """A 1x3x32x48 float32 batch in [0, 1] for runner tests."""
    return np.random.default_rng(0).random((1, 3, 32, 48), dtype=np.float32)


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not present at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tiny_coreml_weights(tmp_path_factory) -> Path:
    """A 4-channel, 2-block model: Core ML conversions of it take seconds."""
    import torch

    torch.manual_seed(1)  # the tamper test flips a head weight byte that matters for this init
    path = tmp_path_factory.mktemp("coreml_weights") / "tiny.safetensors"
    return save_weights(TreeFusionNet(ModelConfig(channels=4, blocks=2)), path)


@pytest.fixture(scope="session")
def fp16_package(tiny_coreml_weights, tmp_path_factory) -> Path:
    """One FP16 Core ML package shared by the export and runner tests (converted once)."""
    pytest.importorskip("coremltools", reason="coremltools is not installed (pip install 'treefuse[coreml]')")
    from coreml_fixtures import RANGE
    from treefuse.export.coreml.exporter import export_coreml

    return export_coreml(tiny_coreml_weights, tmp_path_factory.mktemp("coreml_fp16") / "m.mlpackage", "fp16", **RANGE)
