"""The coreml runner on Linux: treefuse's MIL evaluator runs the saved package, never the torch weights."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("coremltools", reason="coremltools is not installed (pip install 'treefuse[coreml]')")

from treefuse.checkpoint import load_weights  # noqa: E402
from treefuse.cli import main  # noqa: E402
from treefuse.errors import TreefuseError  # noqa: E402
from treefuse.export.coreml.exporter import export_coreml  # noqa: E402
from treefuse.export.calibration_images import calibration_from  # noqa: E402
from treefuse.export.coreml.w8a8 import quantize_w8a8  # noqa: E402
from treefuse.folding import fold  # noqa: E402
from treefuse.gates import gates_for  # noqa: E402
from treefuse.images import from_batch  # noqa: E402
from treefuse.metrics import calculate_psnr  # noqa: E402
from treefuse.runtimes.backends import coreml_mil  # noqa: E402
from treefuse.runtimes.backends.coreml_mil import WEIGHTS_DIR, load_program  # noqa: E402
from treefuse.runtimes.backends.coreml_runner import CoreMLRunner  # noqa: E402
from treefuse.runtimes.backends.torch_runner import TorchRunner  # noqa: E402

from coreml_fixtures import RANGE  # noqa: E402


@pytest.fixture()
def batch():
    return np.random.default_rng(0).random((2, 3, 32, 48), dtype=np.float32)


def psnr(output: np.ndarray, reference: np.ndarray) -> float:
    return min(calculate_psnr(from_batch(o[None]), from_batch(r[None])) for o, r in zip(output, reference))


def run(spec_path, batch, runner_class=CoreMLRunner):
    with runner_class(spec_path) as runner:
        return runner.infer(batch)


def test_fp16_package_matches_pytorch_above_45_db(fp16_package, tiny_coreml_weights, batch):
    output = run(fp16_package, batch)
    assert output.shape == batch.shape and output.dtype == np.float32
    assert psnr(output, run(tiny_coreml_weights, batch, TorchRunner)) >= gates_for("fp16").min_output_psnr_db
    # FP16 compute is really FP16: it differs from FP32 by more than float32 rounding.
    assert np.abs(output - run(tiny_coreml_weights, batch, TorchRunner)).max() > 1e-5


def test_fp16_convs_computed_in_fp32_match_torchs_own_fp16_conv(fp16_package, batch):
    """The fast path (FP32 accumulate, FP16 outputs) against torch's FP16 conv: within an ulp or two."""
    program = load_program(fp16_package)
    fast = coreml_mil.evaluate(program, batch[:1])
    native = coreml_mil.evaluate(program, batch[:1], coreml_mil.NATIVE_FP16_OPS)
    assert np.array_equal(fast, fast.astype(np.float16).astype(np.float32))  # the output really is FP16
    assert np.abs(fast - native).max() <= 2 * 2.0 ** -10  # FP16 ulp is 2^-11 in [0.5, 1), 2^-10 in [1, 2)
    assert np.mean(fast != native) < 0.05


@pytest.mark.slow
def test_fp32_package_matches_pytorch_to_float_rounding(tiny_coreml_weights, batch, tmp_path):
    package = export_coreml(tiny_coreml_weights, tmp_path / "fp32.mlpackage", "fp32", **RANGE)
    assert np.abs(run(package, batch) - run(tiny_coreml_weights, batch, TorchRunner)).max() < 1e-4


def test_w8a8_package_is_calibrated_and_its_quantize_ops_run_close_to_pytorch(tiny_coreml_weights, batch, tmp_path):
    rng = np.random.default_rng(1)
    calibration = type("Calibration", (), {"images": rng.random((4, 3, 32, 48), dtype=np.float32), "sha256": "ab" * 32})
    package = export_coreml(tiny_coreml_weights, tmp_path / "w8a8.mlpackage", "w8a8", calibration=calibration, **RANGE)
    program = load_program(package)
    assert program.metadata()["treefuse.calibration_sha256"] == "ab" * 32
    assert program.spec.specificationVersion == 8  # iOS17
    assert {"quantize", "dequantize", "constexpr_affine_dequantize"} <= {op.op_type for op in program.main.operations}
    output = run(package, batch)
    reference = run(tiny_coreml_weights, batch, TorchRunner)
    assert 30.0 <= psnr(output, reference) < 80.0  # close, but 8-bit activations are not exact
    # The evaluator reproduces the torch fake-quantized model the package was converted from
    # (up to an FP16 rounding that moves a value across an 8-bit step here and there).
    fake_quantized = quantize_w8a8(fold(load_weights(tiny_coreml_weights).model), calibration_from(calibration),
                                   torch.from_numpy(batch[:1]))
    with torch.no_grad():
        simulated = fake_quantized(torch.from_numpy(batch)).numpy()
    assert psnr(output, simulated) > psnr(output, reference) + 3.0


def test_w8a8_keeps_the_across_block_fuses_in_float(tiny_coreml_weights, batch):
    calibration = type("Calibration", (), {"images": np.random.default_rng(2).random((4, 3, 32, 48), dtype=np.float32),
                                           "sha256": "cd" * 32})
    quantized = quantize_w8a8(fold(load_weights(tiny_coreml_weights).model), calibration_from(calibration),
                              torch.from_numpy(batch[:1]))
    # Finalized quantized convs are torch.ao's reference modules; float ones stay torch.nn convs.
    quantized_parts = {name.split(".")[0] for name, module in quantized.named_modules()
                       if type(module).__module__.startswith("torch.ao.nn.quantized")}
    assert {"head", "blocks", "negated_tail"} <= quantized_parts and "across_fuses" not in quantized_parts


def test_runner_reports_range_evaluator_and_precision(fp16_package):
    runner = CoreMLRunner(fp16_package)
    assert runner.input_constraints() == {"min_hw": (16, 16), "max_hw": (256, 256)}
    facts = runner.describe()
    assert "MIL evaluator" in facts["backend"] and facts["precision"] == "fp16" and facts["compute_dtype"] == "fp16"
    with runner, pytest.raises(TreefuseError, match="outside the artifact's range"):
        runner.infer(np.zeros((1, 3, 8, 48), dtype=np.float32))


def test_output_comes_from_the_package_weight_file(fp16_package, tmp_path, batch):
    tampered = tmp_path / "tampered.mlpackage"
    shutil.copytree(fp16_package, tampered)
    flip_head_weight_byte(tampered)
    assert not np.allclose(run(tampered, batch), run(fp16_package, batch))


def test_parity_exits_1_on_a_tampered_weight_file(fp16_package, tiny_coreml_weights, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for i in range(2):
        pixels = np.random.default_rng(i).integers(0, 256, size=(32, 48, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(images / f"{i}.png")
    args = ["parity", "--ref", f"torch:{tiny_coreml_weights}", "--images", str(images)]
    assert main([*args, "--cand", f"coreml:{fp16_package}", "--min-psnr", "45"]) == 0
    tampered = tmp_path / "tampered.mlpackage"
    shutil.copytree(fp16_package, tampered)
    flip_head_weight_byte(tampered)
    assert main([*args, "--cand", f"coreml:{tampered}", "--min-psnr", "45"]) == 1


def test_unimplemented_op_is_named(fp16_package, monkeypatch):
    monkeypatch.delitem(coreml_mil.OPS, "relu")
    with pytest.raises(TreefuseError, match="'relu'"):
        CoreMLRunner(fp16_package).activate()


def test_truncated_weight_file_is_a_one_line_error(fp16_package, tmp_path):
    broken = tmp_path / "broken.mlpackage"
    shutil.copytree(fp16_package, broken)
    weight_file = broken / WEIGHTS_DIR / "weight.bin"
    weight_file.write_bytes(weight_file.read_bytes()[:100])
    with pytest.raises(TreefuseError, match="corrupt"):
        CoreMLRunner(broken).activate()


def test_folder_that_is_not_a_package_is_refused(tmp_path, capsys):
    folder = tmp_path / "not.mlpackage"
    folder.mkdir()
    with pytest.raises(TreefuseError, match="not a Core ML package"):
        CoreMLRunner(folder).activate()
    assert main(["parity", "--ref", f"coreml:{folder}", "--cand", f"coreml:{folder}", "--images", str(tmp_path)]) == 2


def flip_head_weight_byte(package) -> None:
    """Flip one exponent bit of the first head-conv weight, found by its bytes in weight.bin."""
    program = load_program(package)
    head = next(op for op in program.main.operations if op.op_type == "conv")
    weight_bytes = np.asarray(head.weight.val).tobytes()
    weight_file = package / WEIGHTS_DIR / "weight.bin"
    data = bytearray(weight_file.read_bytes())
    offset = bytes(data).find(weight_bytes)
    assert offset > 0, "the head weight is not stored in weight.bin"
    data[offset + 1] ^= 0x40  # the high byte of the first FP16 value: an exponent bit
    weight_file.write_bytes(bytes(data))
