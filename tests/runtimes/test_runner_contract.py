"""One contract every backend kind keeps, whatever runs it: checked over the format table.

Same input -> an output of the input's shape, finite; a complete artifact record (format,
precision, model config, sha256, source weights); deactivate releases and infer then refuses.
Artifacts are made through each row's exporter, so a format added to the table is covered here as it is.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from treefuse.checkpoint import load_weights
from treefuse.formats import FORMATS, format_of
from treefuse.runtimes.backends.registry import make_runner

BATCH_HW = (24, 40)  # LiteRT models have one fixed size: the test's
SHAPE = {"range": {"min_hw": (16, 16), "max_hw": (128, 128)}, "fixed": {"size": BATCH_HW}}


def contract_kinds() -> list[str]:
    """Every kind of the format table, read when called."""
    return sorted(fmt.kind for fmt in FORMATS)


def make_artifact(kind: str, weights: Path, folder: Path) -> str:
    """An fp32 artifact of `kind` through its row's exporter (or the row whose files it runs); its KIND:PATH."""
    from treefuse.errors import TreefuseError
    from treefuse.export.request import ExportRequest, run_export

    row = format_of(kind)
    if kind == "torch":
        return f"torch:{weights}"
    maker = format_of(row.artifact_of) if row.artifact_of else row
    out = folder / f"m{maker.suffix}"
    source = weights
    if maker.source == "onnx":
        source = Path(make_artifact("onnx", weights, folder).partition(":")[2])
        out = folder / f"m.fp16{maker.suffix}"
    precision = "fp32" if "fp32" in maker.precision_names else maker.default_precision
    try:
        run_export(ExportRequest(maker.kind, source, out, precision, **SHAPE.get(maker.shape.style, {})))
    except TreefuseError as exc:
        if "converter" not in str(exc).lower():
            raise
        pytest.skip(f"{kind}: its converter is not installed here: {exc}")  # LiteRT's lives in its own venv
    return f"{kind}:{out}"


@pytest.fixture(scope="module")
def tiny_weights_path(tmp_path_factory):
    import torch

    from treefuse.checkpoint import save_weights
    from treefuse.config import ModelConfig
    from treefuse.model import TreeFusionNet

    torch.manual_seed(0)
    return save_weights(TreeFusionNet(ModelConfig(channels=4, blocks=2)),
                        tmp_path_factory.mktemp("contract") / "tiny.safetensors")




@pytest.mark.parametrize("kind", [pytest.param(kind, marks=pytest.mark.slow) if format_of(kind).slow_to_export else kind
                                  for kind in contract_kinds()])
def test_runner_contract(kind, tiny_weights_path, tmp_path):
    reason = format_of(kind).unavailable_reason()
    if reason:
        pytest.skip(reason)
    spec = make_artifact(kind, tiny_weights_path, tmp_path)
    batch = np.random.default_rng(0).random((1, 3, *BATCH_HW), dtype=np.float32)
    runner = make_runner(spec)
    with runner:
        first, second = runner.infer(batch), runner.infer(batch)
        read_only = batch.copy()
        read_only.flags.writeable = False  # as a memory-mapped calibration set arrives
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "non-writable array" warning reaches the user
            third = runner.infer(read_only)
        facts = runner.describe()
    assert first.shape == batch.shape and np.isfinite(first).all()
    assert np.array_equal(first, second) and np.array_equal(first, third)  # the same input gives the same output
    artifact = facts["artifact"]
    expected = "fp32" if "fp32" in format_of(kind).precision_names else format_of(kind).default_precision
    assert artifact["format"] == kind and artifact["precision"] == expected and len(artifact["sha256"]) == 64
    assert artifact["config"] == load_weights(tiny_weights_path).config.to_dict()
    assert artifact["source_sha256"] == load_weights(tiny_weights_path).sha256
    assert artifact["tool_versions"].get("torch")
    assert not runner.is_active
    with pytest.raises(RuntimeError, match="before activate"):
        runner.infer(batch)
