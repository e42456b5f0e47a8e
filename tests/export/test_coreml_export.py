"""Core ML export: packages open with coremltools' loader, carry metadata, refuse bad input atomically."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest

pytest.importorskip("coremltools", reason="coremltools is not installed (pip install 'treefuse[coreml]')")

from treefuse.cli import main  # noqa: E402
from treefuse.config import ModelConfig  # noqa: E402
from treefuse.errors import TreefuseError  # noqa: E402
from treefuse.export.coreml import exporter as coreml_export  # noqa: E402
from treefuse.export.coreml.exporter import export_coreml  # noqa: E402
from treefuse.files import sha256_file  # noqa: E402
from treefuse.runtimes.backends.coreml_mil import import_coremltools, load_program  # noqa: E402

from coreml_fixtures import RANGE  # noqa: E402


def op_types(path) -> set[str]:
    return {op.op_type for op in load_program(path).main.operations}


def test_fp16_package_opens_with_coremltools_and_records_provenance(fp16_package, tiny_coreml_weights):
    ct = import_coremltools()
    mlmodel = ct.models.MLModel(str(fp16_package), skip_model_load=True)
    spec = mlmodel.get_spec()
    assert spec.WhichOneof("Type") == "mlProgram"
    assert spec.specificationVersion == 7  # iOS16
    meta = dict(spec.description.metadata.userDefined)
    assert meta["treefuse.precision"] == "fp16" and meta["treefuse.deployment_target"] == "iOS16"
    assert meta["treefuse.source_sha256"] == sha256_file(tiny_coreml_weights)
    assert json.loads(meta["treefuse.config"]) == ModelConfig(channels=4, blocks=2).to_dict()
    assert "coremltools" in json.loads(meta["treefuse.tool_versions"])
    assert "treefuse.calibration_sha256" not in meta
    assert mlmodel.author == "treefuse" and mlmodel.license and "fp16" in mlmodel.short_description
    assert load_program(fp16_package).flexible_hw() == ((16, 16), (256, 256))
    assert op_types(fp16_package) <= {"const", "conv", "relu", "concat", "add"}


@pytest.mark.slow
def test_w8_holds_8bit_weights(tiny_coreml_weights, tmp_path):
    path = export_coreml(tiny_coreml_weights, tmp_path / "w8.mlpackage", "w8", **RANGE)
    program = load_program(path)
    dequantized = [op for op in program.main.operations if op.op_type == "constexpr_affine_dequantize"]
    convs = [op for op in program.main.operations if op.op_type == "conv"]
    large = [op for op in convs if int(np.prod(op.weight.shape)) > coreml_export.WEIGHT_QUANT_THRESHOLD]
    assert len(large) >= len(convs) - 1 and len(dequantized) == len(large)  # conv weights stored as int8
    assert all(op.quantized_data.val.dtype == np.int8 for op in dequantized)


@pytest.mark.parametrize("kwargs, message", [
    (dict(precision="w4"), "unsupported coreml precision"),
    (dict(precision="w8a8"), "needs a calibration set"),
    (dict(precision="fp16", calibration="somewhere"), "only used by w8a8"),
    (dict(precision="fp16", min_hw=(300, 300), max_hw=(256, 256)), "is empty"),
])
def test_bad_options_are_one_line_errors_and_write_nothing(tiny_coreml_weights, tmp_path, kwargs, message):
    with pytest.raises(TreefuseError, match=message):
        export_coreml(tiny_coreml_weights, tmp_path / "m.mlpackage", **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_out_path_must_be_an_mlpackage_and_never_replaces_other_folders(tiny_coreml_weights, tmp_path):
    with pytest.raises(TreefuseError, match=".mlpackage"):
        export_coreml(tiny_coreml_weights, tmp_path / "m.onnx", "fp16", **RANGE)
    precious = tmp_path / "photos.mlpackage"
    precious.mkdir()
    (precious / "keep.png").write_bytes(b"x")
    with pytest.raises(TreefuseError, match="not a coreml package"):
        export_coreml(tiny_coreml_weights, precious, "fp16", **RANGE)
    assert (precious / "keep.png").is_file()


def test_failure_after_conversion_leaves_nothing_half_written(tiny_coreml_weights, tmp_path, monkeypatch):
    def broken_save(*args, **kwargs):
        raise TreefuseError("disk full")

    monkeypatch.setattr(coreml_export, "_stamp", lambda mlmodel, *a: setattr(mlmodel, "save", broken_save))
    with pytest.raises(TreefuseError, match="disk full"):
        export_coreml(tiny_coreml_weights, tmp_path / "m.mlpackage", "fp16", **RANGE)
    assert list(tmp_path.iterdir()) == []


def test_missing_coremltools_names_the_extra(tiny_coreml_weights, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "coremltools", None)
    with pytest.raises(TreefuseError, match=r"treefuse\[coreml\]"):
        export_coreml(tiny_coreml_weights, tmp_path / "m.mlpackage", "fp16", **RANGE)


@pytest.mark.slow
def test_cli_exports_fp32_and_refuses_bad_input(tiny_coreml_weights, tmp_path, capsys):
    out = tmp_path / "m.mlpackage"
    assert main(["export", "coreml", "--weights", str(tiny_coreml_weights), "--precision", "fp32", "--min-size", "16x16",
                 "--max-size", "128x192", "--out", str(out)]) == 0
    assert load_program(out).flexible_hw() == ((16, 16), (128, 192))
    assert load_program(out).precision() == "fp32"
    capsys.readouterr()
    with pytest.raises(SystemExit) as refused:  # the format table's precisions are argparse's choices
        main(["export", "coreml", "--weights", str(tiny_coreml_weights), "--precision", "int4", "--out", str(out)])
    assert refused.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err
    assert main(["export", "coreml", "--weights", str(tmp_path / "none.safetensors"), "--out", str(out)]) == 2
