"""`treefuse diff` and `treefuse profile` on 64x64 images: layers match by name, a tampered layer is named."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from treefuse.cli import main
from treefuse.images import write_image
from treefuse.results import result_from_json
from treefuse.runtimes.inspect.names import layer_tensors

TAMPERED_LAYER = "blocks.2.pairs.0.conv_a"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inspect_images")
    rng = np.random.default_rng(3)
    for index in range(1):
        write_image(folder / f"{index}.png", rng.random((64, 64, 3), dtype=np.float32))
    return folder


@pytest.fixture(scope="module")
def tampered_onnx(shipped_onnx, tmp_path_factory):
    """The trained model's export with one layer's kernel scaled: every layer before it is untouched.

    (Trained weights: a random network's output barely depends on any one layer.)"""
    model = onnx.load(str(shipped_onnx))
    weight = next(t for t in model.graph.initializer if t.name == f"{TAMPERED_LAYER}.weight")
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.5, weight.name))
    path = tmp_path_factory.mktemp("tampered") / "tampered.onnx"
    onnx.save(model, str(path))
    return path


def _diff(tmp_path, ref, cand, images, *extra):
    out = tmp_path / "diff.json"
    code = main(["diff", "--ref", ref, "--cand", cand, "--images", str(images), "--json", str(out), *extra])
    return code, result_from_json(json.loads(out.read_text()), str(out)) if out.exists() else None


def test_torch_and_onnx_fp32_match_layer_for_layer(weights_path, onnx_path, images, tmp_path):
    arrays = tmp_path / "layers.npz"
    code, result = _diff(tmp_path, f"torch:{weights_path}", f"onnx:{onnx_path}", images, "--arrays", str(arrays))
    assert code == 0 and result.passed and result.first_diverging_layer is None
    names = [row["layer"] for row in result.layers]
    assert names[0] == "head" and names[-1] == "output" and TAMPERED_LAYER in names
    assert result.unmatched == {"reference_only": [], "candidate_only": []}  # every layer found its name
    assert min(row["psnr_db"] for row in result.layers) > 60
    assert result.gates["min_output_psnr_db"] == 60 and result.device["cpu"]["isa_flags"] is not None
    with np.load(arrays, allow_pickle=False) as saved:
        assert saved[f"reference/{TAMPERED_LAYER}"].shape == (1, 16, 64, 64)


def test_a_tampered_layer_is_the_first_diverging_one(shipped_weights, tampered_onnx, images, tmp_path, capsys):
    code, result = _diff(tmp_path, f"torch:{shipped_weights}", f"onnx:{tampered_onnx}", images)
    assert code == 1 and not result.passed
    assert result.first_diverging_layer == TAMPERED_LAYER
    by_name = {row["layer"]: row["psnr_db"] for row in result.layers}
    assert by_name["blocks.1"] > 60 > by_name[TAMPERED_LAYER]  # untouched before it, wrong from it on
    assert TAMPERED_LAYER in capsys.readouterr().err


def test_openvino_layers_match_onnx_runtime(onnx_path, images, tmp_path):
    pytest.importorskip("openvino", reason="openvino is not installed (pip install 'treefuse[openvino]')")
    code, result = _diff(tmp_path, f"onnx:{onnx_path}", f"openvino:{onnx_path}", images)
    assert code == 0 and result.first_diverging_layer is None and len(result.layers) > 60


def test_quantize_dequantize_after_a_layer_is_its_output():
    """ONNX Runtime's INT8 export drops the Relu after a conv; the layer's value is its dequantized output."""
    nodes = [helper.make_node("Conv", ["x", "w"], ["/Relu_output_0"], name="/head/Conv"),
             helper.make_node("QuantizeLinear", ["/Relu_output_0", "s", "z"], ["q"], name="/Relu_output_0_QuantizeLinear"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="/Relu_output_0_DequantizeLinear"),
             helper.make_node("Conv", ["dq", "w"], ["c"], name="/blocks.0/conv_a/Conv"),
             helper.make_node("Add", ["c", "dq"], ["sum"], name="/blocks.0/Add"),
             helper.make_node("Relu", ["sum"], ["y"], name="/blocks.0/Relu")]
    graph = helper.make_graph(nodes, "g", [], [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, None)])
    assert layer_tensors(graph) == {"head": "dq", "blocks.0.conv_a": "c", "output": "y"}


def test_a_format_without_layer_capture_is_one_line(onnx_path, images, tmp_path, monkeypatch, capsys):
    from treefuse import formats

    monkeypatch.setattr(formats, "FORMATS", [dataclasses.replace(f, layers=None) if f.kind == "onnx" else f
                                             for f in formats.FORMATS])
    code, _ = _diff(tmp_path, f"onnx:{onnx_path}", f"onnx:{onnx_path}", images)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "cannot expose this format's layers" in err


@pytest.mark.parametrize("kind", ["onnx", "openvino"])
def test_profile_groups_add_up_to_the_total(kind, onnx_path, tmp_path):
    if kind == "openvino":
        pytest.importorskip("openvino", reason="openvino is not installed (pip install 'treefuse[openvino]')")
    out = tmp_path / "profile.json"
    assert main(["profile", f"{kind}:{onnx_path}", "--size", "64x64", "--runs", "2", "--threads", "1",
                 "--json", str(out)]) == 0
    result = result_from_json(json.loads(out.read_text()), str(out))
    assert result.total_ms > 0 and result.runs == 2 and result.backend["kind"] == kind
    for table in (result.groups_ms.values(), [r["ms"] for r in result.op_types], [r["ms"] for r in result.layers]):
        assert sum(table) == pytest.approx(result.total_ms, rel=1e-6)
    assert "compute" in result.groups_ms
    assert any(row["layer"] == TAMPERED_LAYER for row in result.layers)  # nodes carry the folded model's names
    assert sum(row["nodes"] for row in result.op_types) == len(result.nodes)


def test_profile_of_a_format_without_a_profiler_is_one_line(weights_path, capsys):
    assert main(["profile", f"torch:{weights_path}", "--size", "64x64"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no profiler" in err


ARTIFACTS = Path(__file__).resolve().parents[2] / "reports" / "artifacts"


@pytest.mark.slow
def test_litert_layers_are_named_back_to_the_folded_model(shipped_weights, images, tmp_path):
    pytest.importorskip("ai_edge_litert", reason="ai-edge-litert is not installed (pip install 'treefuse[litert]')")
    code, result = _diff(tmp_path, f"torch:{shipped_weights}", f"litert:{ARTIFACTS / 'default.int8.tflite'}", images)
    assert code in (0, 1) and result.unmatched == {"reference_only": [], "candidate_only": []}
    assert [row["layer"] for row in result.layers][:2] == ["head", "blocks.0.pairs.0.conv_a"]


def test_litert_module_paths_map_to_layer_names():
    from treefuse.config import ModelConfig
    from treefuse.runtimes.inspect.litert_layers import _module_paths, litert_paths

    paths = litert_paths(ModelConfig())
    name = ("treefuse.folding.FoldedTreeFusionNet;;treefuse.folding.FoldedTreeFusionNet/treefuse.folding.FoldedBlock_3/"
            "treefuse.folding.FoldedPair_0/torch.nn.modules.conv.Conv2d_conv_a;1")
    assert [paths.get(p) for p in _module_paths(name)] == ["", "blocks.3.pairs.0.conv_a"]
    assert paths["FoldedBlock_2/Fuse_0"] == "blocks.2.upper_fuses.0" and paths["Fuse_6"] == "across_fuses.6"


@pytest.mark.slow
def test_executorch_profile_reads_the_xnnpack_operators(tmp_path):
    pytest.importorskip("executorch", reason="executorch is not installed (pip install 'treefuse[executorch]')")
    out = tmp_path / "profile.json"
    assert main(["profile", f"executorch:{ARTIFACTS / 'default.int8.pte'}", "--size", "64x64", "--runs", "1",
                 "--json", str(out)]) == 0
    result = result_from_json(json.loads(out.read_text()), str(out))
    assert sum(result.groups_ms.values()) == pytest.approx(result.total_ms, rel=1e-6)
    kinds = {row["op_type"] for row in result.op_types}
    assert "Convolution (NHWC, QC8) IGEMM" in kinds and "layout" in result.groups_ms


@pytest.mark.slow
def test_coreml_layers_match_the_reference_where_the_program_keeps_their_names(tiny_coreml_weights, fp16_package,
                                                                               images, tmp_path):
    code, result = _diff(tmp_path, f"torch:{tiny_coreml_weights}", f"coreml:{fp16_package}?evaluator=mil", images)
    assert code == 0 and result.first_diverging_layer is None
    matched = [row["layer"] for row in result.layers]
    assert "blocks.1.pairs.0.conv_a" in matched and matched[-1] == "output"
    assert min(row["psnr_db"] for row in result.layers) > 45  # FP16 program, FP32 reference


@pytest.mark.slow
def test_executorch_diff_judges_the_output_and_lists_its_hidden_layers(shipped_weights, images, tmp_path):
    pytest.importorskip("executorch", reason="executorch is not installed (pip install 'treefuse[executorch]')")
    code, result = _diff(tmp_path, f"torch:{shipped_weights}", f"executorch:{ARTIFACTS / 'default.int8.pte'}", images)
    assert code in (0, 1) and [row["layer"] for row in result.layers] == ["output"]
    assert "blocks.2.pairs.0.conv_a" in result.unmatched["reference_only"]
