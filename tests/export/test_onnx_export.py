import numpy as np
import onnx
import pytest
import torch

from treefuse.checkpoint import load_weights
from treefuse.errors import TreefuseError
from treefuse.export.onnx.exporter import export_onnx, read_metadata
from treefuse.runtimes.backends.registry import make_runner


def test_export_matches_pytorch_at_several_shapes(weights_path, onnx_path):
    model = load_weights(weights_path).model
    with make_runner(f"onnx:{onnx_path}") as runner:
        for shape in [(1, 3, 32, 48), (2, 3, 21, 17)]:  # dynamic batch, odd sizes
            x = np.random.default_rng(0).random(shape, dtype=np.float32)
            with torch.no_grad():
                expected = model(torch.from_numpy(x)).numpy()
            assert np.abs(runner.infer(x) - expected).max() < 1e-4


def test_export_carries_provenance(weights_path, onnx_path):
    meta = read_metadata(onnx.load(str(onnx_path)))
    assert meta["source_sha256"] == load_weights(weights_path).sha256
    assert '"precision": "fp32"' in meta["treefuse_provenance"] and "onnxruntime" in meta["treefuse_provenance"]
    assert '"blocks": 8' in meta["treefuse_config"]


def test_folded_graph_has_fewer_nodes_than_plain(weights_path, onnx_path, tmp_path):
    plain = export_onnx(weights_path, tmp_path / "plain.onnx", folded=False, simplify=False)
    count = lambda path: len(onnx.load(str(path)).graph.node)
    assert count(onnx_path) < count(plain)


def test_failed_export_leaves_nothing(tmp_path):
    (tmp_path / "bad.safetensors").write_bytes(b"nope")
    with pytest.raises(TreefuseError):
        export_onnx(tmp_path / "bad.safetensors", tmp_path / "out.onnx")
    assert list(tmp_path.iterdir()) == [tmp_path / "bad.safetensors"]


def test_spatial_dims_are_pinned_so_ort_fuses_adds(onnx_path, tmp_path):
    import onnxruntime as ort
    from collections import Counter

    model = onnx.load(str(onnx_path))
    spatial = {tuple(d.dim_param for d in v.type.tensor_type.shape.dim[2:]) for v in model.graph.value_info}
    assert spatial == {("height", "width")}
    options = ort.SessionOptions()
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    optimized = Counter(node.op_type for node in onnx.load(str(tmp_path / "optimized.onnx")).graph.node)
    assert optimized["Reshape"] == 0 and optimized["Add"] < 25  # each folded pair's Add fused into its conv
