"""Tiled output equals whole-image output for a non-default model on every format that runs here.

The model sees 37 px (9 blocks, dilation factor 4), more than the shipped model's 33: every
runner must read that radius from the artifact's own metadata (a runner without it is refused).
With random weights the influence of far pixels falls below float32 rounding beyond ~25 px,
so seams alone could not tell a 33 px margin from a 37 px one: the radius is asserted directly.
"""
import numpy as np
import pytest

from treefuse.checkpoint import save_weights
from treefuse.config import ModelConfig
from treefuse.model import TreeFusionNet
from treefuse.runtimes.applications.derain import frame_deraining, model_radius
from treefuse.runtimes.backends.registry import make_runner
from treefuse.runtimes.applications.tiling import RECEPTIVE_RADIUS

WIDE = ModelConfig(channels=4, blocks=9)
TOLERANCE = {"torch": 1e-5, "onnx": 1e-5, "coreml": 2e-3}  # Core ML fp16 rounds each tile's sums differently


@pytest.fixture(scope="module")
def wide_artifacts(tmp_path_factory):
    import torch

    folder = tmp_path_factory.mktemp("wide")
    torch.manual_seed(3)
    weights = save_weights(TreeFusionNet(WIDE), folder / "wide.safetensors")
    from treefuse.export.onnx.exporter import export_onnx

    specs = {"torch": f"torch:{weights}", "onnx": f"onnx:{export_onnx(weights, folder / 'wide.onnx')}"}
    try:
        from treefuse.export.coreml.exporter import export_coreml

        package = export_coreml(weights, folder / "wide.mlpackage", "fp16", min_hw=(16, 16), max_hw=(256, 256))
        specs["coreml"] = f"coreml:{package}"
    except ImportError:
        pass
    return specs


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["torch", "onnx", "coreml"])
def test_tiles_match_the_whole_image_for_a_non_default_model(wide_artifacts, kind):
    if kind not in wide_artifacts:
        pytest.skip("coremltools is not installed (pip install 'treefuse[coreml]')")
    image = np.random.default_rng(0).random((120, 120, 3), dtype=np.float32)
    with make_runner(wide_artifacts[kind]) as runner:
        assert model_radius(runner) == 37 > RECEPTIVE_RADIUS
        assert runner.artifact().config["blocks"] == 9
        whole = frame_deraining(runner)(image)
        tiled = frame_deraining(runner, tile=96, overlap=2 * 37 + 2)(image)
    assert np.abs(tiled - whole).max() < TOLERANCE[kind]


def test_an_artifact_without_a_model_config_is_refused_for_tiling(tmp_path):
    import onnx

    from treefuse.errors import TreefuseError
    from treefuse.export.onnx.exporter import export_onnx

    weights = save_weights(TreeFusionNet(ModelConfig(channels=4, blocks=1)), tmp_path / "w.safetensors")
    model = onnx.load(str(export_onnx(weights, tmp_path / "m.onnx")))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with make_runner(f"onnx:{tmp_path / 'bare.onnx'}") as runner:
        with pytest.raises(TreefuseError, match="records no model config"):
            frame_deraining(runner, tile=96)
