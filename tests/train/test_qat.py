"""ONNX INT8 QAT on a tiny network: fake quantization as ORT computes it, learned values exported exactly, loss falls."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from treefuse.calib.build import build_calibration_set
from treefuse.config import ModelConfig
from treefuse import qat_run as layout
from treefuse.export.onnx.qat import FakeQuantQdq, fake_quantize, round_ste, write_learned
from treefuse.export.onnx.qat_export import export_qat_int8, load_qat_module, make_qat_base
from treefuse.files import sha256_file
from treefuse.train import qat
from treefuse.train.run_dir import RunDir

from media import write_images

TINY = ModelConfig(channels=4, blocks=2, dilation_factor=2)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    from treefuse.checkpoint import save_weights
    from treefuse.model import TreeFusionNet

    torch.manual_seed(0)
    return save_weights(TreeFusionNet(TINY), tmp_path_factory.mktemp("qat-w") / "w.safetensors", note="tiny")


@pytest.fixture(scope="module")
def calib_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("qat-calib")
    return build_calibration_set(write_images(root / "images", 4), root / "set", 4, (32, 48), seed=0)


def make_run(weights, calib, folder, weight_bits=8, target="ort-qdq"):
    """A QAT run folder as `treefuse qat` starts it (config, base models, qat.json)."""
    config = qat.qat_config("unused", 4, patch_size=16, batch_size=2, lr=1e-3, synthetic_fraction=0.0,
                            checkpoint_every=2, init_weights=str(weights))
    run = RunDir.create(folder, config)
    facts = make_qat_base(weights, calib, folder, weight_bits, target)
    layout.write_settings(folder, {"target": target, "weights": str(weights), "weights_sha256": sha256_file(weights),
                                   "distill": 1.0, "scale_lr_factor": 10.0, **facts})
    return run, config


@pytest.fixture(scope="module")
def qat_run(tiny_weights, calib_dir, tmp_path_factory):
    run, _ = make_run(tiny_weights, calib_dir, tmp_path_factory.mktemp("qat-run") / "run")
    return run.path


def initializers(model):
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def image(height=24, width=32, seed=0):
    return np.random.default_rng(seed).random((1, 3, height, width), dtype=np.float32)


def test_fake_quantize_rounds_half_to_even_and_saturates():
    x = torch.tensor([0.5, 1.5, 2.5, -0.5, 300.0, -7.0])
    out = fake_quantize(x, torch.tensor(1.0), torch.tensor(0.0), 0, 255)
    assert out.tolist() == [0.0, 2.0, 2.0, 0.0, 255.0, 0.0]
    assert fake_quantize(x, torch.tensor(1.0), torch.tensor(0.0), -64, 64).tolist() == [0, 2, 2, 0, 64, -7]


def test_lsq_gradients_match_autograd_of_the_formula():
    torch.manual_seed(0)
    x = (torch.randn(4, 2, 3, 3) * 3).requires_grad_()  # a weight: channels on axis 0
    scale = torch.tensor([0.02, 0.05, 0.01, 0.03]).reshape(4, 1, 1, 1).requires_grad_()
    grad = torch.randn(4, 2, 3, 3)
    ours = torch.autograd.grad(fake_quantize(x, scale, torch.tensor(0.0), -127, 127), (x, scale), grad)
    x2, scale2 = x.detach().requires_grad_(), scale.detach().requires_grad_()
    formula = (torch.clamp(round_ste(x2 / scale2), -127, 127)) * scale2
    reference = torch.autograd.grad(formula, (x2, scale2), grad)
    assert torch.allclose(ours[0], reference[0], rtol=1e-6, atol=0)  # the formula divides and multiplies by s
    assert torch.allclose(ours[1], reference[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("weight_bits", [8, 7])
def test_untrained_module_writes_back_the_ptq_model_unchanged(tiny_weights, calib_dir, tmp_path, weight_bits):
    make_run(tiny_weights, calib_dir, tmp_path / "run", weight_bits)
    module, ptq = load_qat_module(tmp_path / "run")
    written, original = initializers(write_learned(ptq, module)), initializers(ptq)
    assert written.keys() == original.keys()
    assert all(np.array_equal(written[k], original[k]) and written[k].dtype == original[k].dtype for k in original)
    weights = [v for k, v in original.items() if k.endswith("weight_quantized")]
    assert max(np.abs(w).max() for w in weights) == (64 if weight_bits == 7 else 127)


def test_module_computes_what_onnxruntime_computes(qat_run):
    module, _ = load_qat_module(qat_run)
    batch = image()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # plain Q/DQ reference kernels
    ptq = str(qat_run / "base" / "ptq.int8.onnx")
    int8 = ort.InferenceSession(ptq, options, providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]
    fp32 = ort.InferenceSession(str(qat_run / "base" / "fp32.onnx"),
                                providers=["CPUExecutionProvider"]).run(None, {"input": batch})[0]
    with torch.no_grad():
        ours = module(torch.from_numpy(batch)).numpy()
    assert np.abs(ours - int8).max() < 0.25 * np.abs(ours - fp32).max()  # it models the quantization error
    assert np.abs(ours - int8).max() < 1e-3  # measured: identical on this CPU; allow float summation order


def perturb(module, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for multiplier in module.scale_parameters():
            multiplier.mul_(1 + 0.2 * (torch.rand(multiplier.shape, generator=generator) - 0.5))
        for tensor in module.weight_parameters():
            tensor.add_(0.01 * torch.randn(tensor.shape, generator=generator))


def test_export_keeps_learned_scales_exactly(qat_run, tmp_path):

    module, ptq = load_qat_module(qat_run)
    perturb(module)
    layout.save_learned(qat_run, module.state_dict(), 3, 4)
    exported = onnx.load(str(export_qat_int8(qat_run, tmp_path / "m.int8.onnx").path))
    values = initializers(exported)
    learned_scales = [module.names[k] for k in module.multipliers]
    assert learned_scales and all(np.array_equal(values[name], module.scale(name).detach().numpy())
                                  for name in learned_scales)
    assert not all(np.array_equal(values[name], initializers(ptq)[name]) for name in learned_scales)
    assert [(n.op_type, n.name, list(n.input)) for n in exported.graph.node] == \
           [(n.op_type, n.name, list(n.input)) for n in ptq.graph.node]  # same graph, same fast kernels
    meta = {p.key: p.value for p in exported.metadata_props}
    assert '"qat"' in meta["treefuse_provenance"] and meta["precision"] == "int8"
    batch = image()
    result = ort.InferenceSession(str(tmp_path / "m.int8.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"input": batch})[0]
    with torch.no_grad():
        ours = module(torch.from_numpy(batch)).numpy()
    assert 10 * np.log10(1 / np.mean((ours - result) ** 2)) > 45


def test_what_the_trainer_writes_is_what_the_exporter_loads(tiny_weights, calib_dir, tmp_path):
    from treefuse.export.onnx.qat_export import load_learned

    run, config = make_run(tiny_weights, calib_dir, tmp_path / "run")
    trainer = trainer_for(run.path, tiny_weights, config)
    qat.fine_tune(run, trainer, stop_after=2, log=lambda _: None)
    fresh, _ = load_qat_module(run.path)
    assert load_learned(fresh, run.path) == {"step": "2", "steps": "4"}
    trained = trainer.network.state_dict()
    assert not all(torch.equal(v, fresh_v) for v, fresh_v in zip(trained.values(), load_qat_module(run.path)[0].state_dict().values()))
    assert all(torch.equal(trained[k], v) for k, v in fresh.state_dict().items())


class FixedBatches:
    """A sampler stub: batch(step) is a pure function of the step, like PatchSampler."""

    def batch(self, step):
        rng = np.random.default_rng(step % 2)
        clean = rng.random((2, 3, 16, 16), dtype=np.float32)
        return np.clip(clean + 0.3 * (rng.random(clean.shape) > 0.9), 0, 1).astype(np.float32), clean


def trainer_for(run_path, tiny_weights, config, distill=1.0):
    module, _ = load_qat_module(run_path)
    return qat.QatTrainer(module, qat.fp32_teacher(tiny_weights), config, FixedBatches(), module.weight_parameters(),
                          module.scale_parameters(), qat.QatRecipe(distill=distill))


def test_tiny_qat_run_lowers_the_fake_quant_loss(tiny_weights, calib_dir, tmp_path):
    run, config = make_run(tiny_weights, calib_dir, tmp_path / "run")
    config = qat.qat_config("unused", 15, patch_size=16, batch_size=2, lr=1e-4, synthetic_fraction=0.0)
    trainer = trainer_for(run.path, tiny_weights, config, distill=1.0)  # the loss is the quantization error alone
    batches = [tuple(torch.from_numpy(b) for b in FixedBatches().batch(s)) for s in (0, 1)]

    def loss():
        with torch.no_grad():
            return sum(float(trainer.loss(*b)) for b in batches)

    before = loss()
    for _ in range(15):
        trainer.optimize()
    assert loss() < 0.8 * before


def test_resume_continues_exactly(tiny_weights, calib_dir, tmp_path):
    straight_run, config = make_run(tiny_weights, calib_dir, tmp_path / "straight")
    straight = trainer_for(straight_run.path, tiny_weights, config)
    qat.fine_tune(straight_run, straight, log=lambda _: None)
    split_run, _ = make_run(tiny_weights, calib_dir, tmp_path / "split")
    qat.fine_tune(split_run, trainer_for(split_run.path, tiny_weights, config), stop_after=2, log=lambda _: None)
    resumed = trainer_for(split_run.path, tiny_weights, config)
    qat.resume_at_newest(split_run, resumed)
    assert resumed.step == 2
    qat.fine_tune(split_run, resumed, log=lambda _: None)
    for (name, a), (_, b) in zip(straight.network.state_dict().items(), resumed.network.state_dict().items()):
        assert torch.equal(a, b), name


def test_module_refuses_graphs_it_cannot_mirror(qat_run):
    from treefuse.errors import TreefuseError

    module, ptq = load_qat_module(qat_run)
    tampered = onnx.load_from_string(ptq.SerializeToString())
    tampered.graph.node[-1].op_type = "Mul"
    with pytest.raises(TreefuseError, match="cannot mirror"):
        FakeQuantQdq(tampered, onnx.load(str(qat_run / "base" / "rewritten.onnx")))


def test_a_learned_model_that_misses_the_int8_gate_is_not_written(qat_run, tmp_path):

    from treefuse.errors import GateFailed

    module, _ = load_qat_module(qat_run)
    with torch.no_grad():
        for tensor in module.weight_parameters():
            tensor.mul_(-3.0)
    layout.save_learned(qat_run, module.state_dict(), 1, 4)
    with pytest.raises(GateFailed, match="misses its gates"):
        export_qat_int8(qat_run, tmp_path / "m.int8.onnx")
    assert list(tmp_path.iterdir()) == []
