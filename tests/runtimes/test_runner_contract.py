"""One contract every backend kind keeps, whatever runs it: checked over the format table.

Same input -> an output of the input's shape, finite; a complete artifact record (format,
precision, model config, sha256, source weights); deactivate releases and infer then refuses.
A format added to the table without an artifact maker here fails `test_every_format_is_covered`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from treefuse.checkpoint import load_weights
from treefuse.formats import FORMATS, FORMATS_BY_KIND
from treefuse.runtimes.backends.registry import make_runner

NOT_RUNNABLE_HERE = {"trt": "TensorRT needs an NVIDIA GPU (tested against a stand-in in test_trt_*.py)"}


def _torch(weights: Path, folder: Path) -> str:
    return f"torch:{weights}"


def _onnx(weights: Path, folder: Path) -> str:
    from treefuse.export.onnx.exporter import export_onnx

    return f"onnx:{export_onnx(weights, folder / 'm.onnx')}"


def _openvino(weights: Path, folder: Path) -> str:
    from treefuse.export.onnx.exporter import export_onnx

    return f"openvino:{export_onnx(weights, folder / 'ov.onnx')}"


def _coreml(weights: Path, folder: Path) -> str:
    from treefuse.export.coreml.exporter import export_coreml

    return f"coreml:{export_coreml(weights, folder / 'm.mlpackage', 'fp32', min_hw=(16, 16), max_hw=(128, 128))}"


def _executorch(weights: Path, folder: Path) -> str:
    from treefuse.export.pt2e.executorch import export_executorch

    return f"executorch:{export_executorch(weights, folder / 'm.pte', 'fp32', min_hw=(16, 16), max_hw=(128, 128))}"


def _litert(weights: Path, folder: Path) -> str:
    from treefuse.errors import TreefuseError
    from treefuse.export.pt2e.litert import export_litert

    try:  # LiteRT's converter lives in its own environment (docs/mobile.md)
        return f"litert:{export_litert(weights, folder / 'm.tflite', 'fp32', size=BATCH_HW)}"
    except TreefuseError as exc:
        if "converter" not in str(exc).lower() and "litert-torch" not in str(exc):
            raise
        pytest.skip(f"LiteRT converter not installed here: {exc}")


BATCH_HW = (24, 40)  # LiteRT models have one fixed size: the test's
ARTIFACT_MAKERS = {"torch": _torch, "onnx": _onnx, "openvino": _openvino, "coreml": _coreml,
                   "executorch": _executorch, "litert": _litert}


def test_every_format_is_covered():
    uncovered = {fmt.kind for fmt in FORMATS} - set(ARTIFACT_MAKERS) - set(NOT_RUNNABLE_HERE)
    assert not uncovered, f"add an artifact maker for {sorted(uncovered)} to this contract test"


@pytest.fixture(scope="module")
def tiny_weights_path(tmp_path_factory):
    import torch

    from treefuse.checkpoint import save_weights
    from treefuse.config import ModelConfig
    from treefuse.model import TreeFusionNet

    torch.manual_seed(0)
    return save_weights(TreeFusionNet(ModelConfig(channels=4, blocks=2)),
                        tmp_path_factory.mktemp("contract") / "tiny.safetensors")


SLOW_TO_EXPORT = {"coreml", "executorch", "litert"}  # a conversion takes 10-40 s on 2 cores


@pytest.mark.parametrize("kind", [pytest.param(kind, marks=pytest.mark.slow) if kind in SLOW_TO_EXPORT else kind
                                  for kind in sorted(FORMATS_BY_KIND)])
def test_runner_contract(kind, tiny_weights_path, tmp_path):
    if kind in NOT_RUNNABLE_HERE:
        pytest.skip(NOT_RUNNABLE_HERE[kind])
    reason = FORMATS_BY_KIND[kind].unavailable_reason()
    if reason:
        pytest.skip(reason)
    spec = ARTIFACT_MAKERS[kind](tiny_weights_path, tmp_path)
    batch = np.random.default_rng(0).random((1, 3, *BATCH_HW), dtype=np.float32)
    runner = make_runner(spec)
    with runner:
        first, second = runner.infer(batch), runner.infer(batch)
        facts = runner.describe()
    assert first.shape == batch.shape and np.isfinite(first).all()
    assert np.array_equal(first, second)  # the same input gives the same output
    artifact = facts["artifact"]
    assert artifact["format"] == kind and artifact["precision"] == "fp32" and len(artifact["sha256"]) == 64
    assert artifact["config"] == load_weights(tiny_weights_path).config.to_dict()
    assert artifact["source_sha256"] == load_weights(tiny_weights_path).sha256
    assert artifact["tool_versions"].get("torch")
    assert not runner.is_active
    with pytest.raises(RuntimeError, match="before activate"):
        runner.infer(batch)
