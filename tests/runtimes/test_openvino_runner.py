"""OpenVINO runner: FP32 and BF16 hints on the FP32 ONNX agree with ONNX Runtime; bad settings are refused clearly."""
import numpy as np
import pytest

from treefuse.errors import TreefuseError
from treefuse.runtimes.backends.registry import make_runner

pytest.importorskip("openvino", reason="OpenVINO is not installed (pip install 'treefuse[openvino]')")

from backend_helpers import run_backend as _run  # noqa: E402


def test_fp32_matches_onnx_runtime(onnx_path, image):
    reference, _ = _run(f"onnx:{onnx_path}", image)
    output, facts = _run(f"openvino:{onnx_path}", image)
    assert output.shape == image.shape and np.abs(output - reference).max() < 1e-4
    assert facts["kind"] == "openvino" and facts["precision"] == "fp32" and facts["artifact"]["source_sha256"]


def test_bf16_hint_is_close_but_not_fp32_exact(shipped_onnx, image):
    import openvino

    if "BF16" not in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no BF16 support in OpenVINO")
    reference, _ = _run(f"onnx:{shipped_onnx}", image)
    output, facts = _run(f"openvino:{shipped_onnx}?precision=bf16", image)
    error = np.abs(output - reference).max()
    assert facts["precision"] == "bf16" and 0 < error < 0.05


def test_several_shapes_in_one_session(onnx_path):
    with make_runner(f"openvino:{onnx_path}") as runner:
        for shape in [(1, 3, 16, 16), (2, 3, 24, 40)]:
            assert runner.infer(np.zeros(shape, np.float32)).shape == shape


def test_bad_precision_and_corrupt_model_are_one_line_errors(onnx_path, tmp_path):
    with pytest.raises(TreefuseError, match="precision must be one of"):
        make_runner(f"openvino:{onnx_path}?precision=fp8")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"garbage")
    with pytest.raises(TreefuseError, match="cannot read"):
        make_runner(f"openvino:{bad}").activate()


def test_int8_qdq_onnx_runs_int8_and_stays_close(onnx_path, image, tmp_path):
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": image}, {"input": image[:, :, ::-1].copy()}])

        def get_next(self):
            return next(self.batches, None)

    int8_path = tmp_path / "int8.onnx"
    quantize_static(str(onnx_path), str(int8_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    model = onnx.load(str(int8_path))
    for prop in model.metadata_props:  # what treefuse's own INT8 export records
        if prop.key == "treefuse.precision":
            prop.value = "int8"
    onnx.save(model, str(int8_path))
    reference, _ = _run(f"onnx:{onnx_path}", image)
    output, facts = _run(f"openvino:{int8_path}", image)
    assert facts["precision"] == "int8+fp32" and facts["model_precision"] == "int8"
    assert 0 < np.abs(output - reference).max() < 0.2
