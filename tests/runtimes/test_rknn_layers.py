"""`treefuse diff` with an RKNN candidate: the recipe's ONNX model with every layer exposed, rebuilt on the simulator.

The exposure runs everywhere; the diff itself needs rknn-toolkit2 (.venv-rknn, `make install-rknn`) and
skips with the reason without it (4-channel weights at the paired images' 40x56: seconds per build).
"""
from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from treefuse.cli import main
from treefuse.export.rknn.exporter import pin_input
from treefuse.runtimes.backends.rknn_runner import toolkit_missing
from treefuse.runtimes.inspect.names import OUTPUT, layer_tensors
from treefuse.runtimes.inspect.rknn_layers import exposed_recipe_model

needs_toolkit = pytest.mark.skipif(toolkit_missing() is not None, reason=f"{toolkit_missing()}")
QAT_MODEL = Path(__file__).resolve().parents[2] / "reports" / "artifacts" / "default.int8.onnx"


def test_every_layer_leaves_the_qdq_model_through_its_own_identity_with_a_static_shape(tmp_path):
    pinned = tmp_path / "model.onnx"
    pinned.write_bytes(QAT_MODEL.read_bytes())
    pin_input(pinned, (16, 16))
    exposed, outputs = exposed_recipe_model(pinned)
    tensors = layer_tensors(onnx.load(str(pinned)).graph)
    assert list(outputs) == list(tensors) and len(outputs) == 74  # ONNX Runtime's names, in its order
    made_by = {node.output[0]: node for node in exposed.graph.node}
    for layer, output in outputs.items():
        if layer != OUTPUT:  # the toolkit fails on a DequantizeLinear output that is itself a graph output
            assert made_by[output].op_type == "Identity" and made_by[output].input[0] == tensors[layer]
    dequantized = {node.output[0] for node in exposed.graph.node if node.op_type == "DequantizeLinear"}
    assert not dequantized & {output.name for output in exposed.graph.output}
    for output in exposed.graph.output:
        dims = output.type.tensor_type.shape.dim
        assert dims and all(dim.dim_value > 0 for dim in dims), output.name


@pytest.fixture(scope="module")
def fp16_rknn(tiny_coreml_weights, tmp_path_factory):
    if toolkit_missing():
        pytest.skip(toolkit_missing())
    out = tmp_path_factory.mktemp("rknn-layers") / "m.rknn"
    assert main(["export", "rknn", "--weights", str(tiny_coreml_weights), "--size", "40x56", "--out", str(out)]) == 0
    return out


@pytest.mark.slow
@needs_toolkit
def test_diff_names_every_layer_of_the_simulated_npu(fp16_rknn, tiny_coreml_weights, paired_dir, tmp_path, capsys):
    out = tmp_path / "d.json"
    code = main(["diff", "--ref", f"torch:{tiny_coreml_weights}", "--cand", f"rknn:{fp16_rknn}", "--images",
                 str(paired_dir), "--crop", "40x56", "--json", str(out)])
    result = json.loads(out.read_text())
    assert code == 0, capsys.readouterr()
    assert result["unmatched"] == {"reference_only": [], "candidate_only": []}  # every torch layer, by name
    recipe_layers = layer_tensors(onnx.load(str(fp16_rknn.parent / "m.rknn.sim" / "model.onnx")).graph)
    assert [row["layer"] for row in result["layers"]] == list(recipe_layers)  # all 20 of the 2-block model
    assert result["first_diverging_layer"] is None
    assert min(row["psnr_db"] for row in result["layers"]) > 45  # float16 on the NPU, every layer
    assert 0 <= result["exposure_effect"]["candidate"] < 0.01


@pytest.mark.slow
@needs_toolkit
def test_a_crop_other_than_the_compiled_size_is_refused_in_one_line(fp16_rknn, tiny_coreml_weights, paired_dir,
                                                                   capsys):
    code = main(["diff", "--ref", f"torch:{tiny_coreml_weights}", "--cand", f"rknn:{fp16_rknn}", "--images",
                 str(paired_dir), "--crop", "32x32"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "--crop 40x56" in err, err
