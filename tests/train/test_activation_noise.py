"""optim.activation_noise: one uint8 step of noise at each tensor ONNX Runtime's INT8 model quantizes, off in eval."""
import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from treefuse.calib.build import build_calibration_set
from treefuse.calib.store import CalibrationSet, load_calibration_set
from treefuse.checkpoint import save_weights
from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.folding import fold
from treefuse.model import TreeFusionNet
from treefuse.train.activation_noise import ActivationNoise, calibrated_steps, quantized_forward
from treefuse.train.session import learning_sections_sha256, resume_session, start_session, train

from test_train_run import Interrupted, _interrupt_at, assert_identical, data, tiny_config  # noqa: F401

TINY = ModelConfig(channels=16, blocks=2)  # 16 channels: the export widens narrower convs (and the tail) to 16


def _model(seed=0):
    torch.manual_seed(seed)
    model = TreeFusionNet(TINY)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)  # biases off zero: ranges that differ per tensor
    return model


def _images(count=3, seed=1):
    return np.random.default_rng(seed).random((count, 3, 20, 28), dtype=np.float32)


def test_steps_are_onnx_runtime_int8_scales(tmp_path):
    """The same tensors, the same ranges: every u8 activation scale of the real INT8 export, and no other."""
    from treefuse.export.onnx.exporter import export_onnx
    from treefuse.export.onnx.quantize import calibrate, concat_overrides, quantize_int8_model
    from treefuse.export.onnx.rewrite import pad_input_channels, pad_output_channels, split_concat_convs

    model, images = _model(), _images()
    save_weights(model, tmp_path / "w.safetensors")
    export_onnx(tmp_path / "w.safetensors", tmp_path / "m.onnx")
    rewritten = split_concat_convs(onnx.load(str(tmp_path / "m.onnx")))[0]
    rewritten = pad_output_channels(pad_input_channels(rewritten)[0])[0]
    onnx.save(rewritten, str(tmp_path / "r.onnx"))
    calibration = CalibrationSet(images=images, sha256="test", manifest={}, path=tmp_path)
    ranges = calibrate(tmp_path / "r.onnx", calibration, "minmax", tmp_path / "ranges.json")
    quantize_int8_model(tmp_path / "r.onnx", tmp_path / "q.onnx", tmp_path / "ranges.json", "minmax",
                        concat_overrides(rewritten, ranges), reduce_range=True)  # 7-bit weights: ort-qdq's layout
    graph = onnx.load(str(tmp_path / "q.onnx")).graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    onnx_steps = sorted(float(constants[n.input[1]]) for n in graph.node
                        if n.op_type == "QuantizeLinear" and n.input[0] not in constants)
    steps = calibrated_steps(model, images)
    assert len(steps) == len(onnx_steps) == 1 + 1 + TINY.blocks * 10 + (TINY.blocks - 1) * 3 + 1
    assert np.allclose(sorted(steps.values()), onnx_steps, rtol=1e-4, atol=1e-8)
    # and every conv weight the export quantizes per output channel, on its grid: max|w| / 64 (7-bit weights)
    grids = {}

    def record(name, weight):
        grids[name] = weight.abs().amax(dim=(1, 2, 3)) / 64
        return weight

    with torch.no_grad():
        quantized_forward(model, torch.from_numpy(images[:1]), lambda _, tensor: tensor, record)
    onnx_grids = [constants[n.input[1]] for n in graph.node
                  if n.op_type == "DequantizeLinear" and n.input[0] in constants and constants[n.input[0]].ndim == 4]
    assert len(grids) == len(onnx_grids) == sum(n.op_type == "Conv" for n in graph.node)
    # the export pads narrow convs with zero channels (their scales are placeholders): each of ours is one of theirs
    theirs = sorted(float(v) for grid in onnx_grids for v in grid)
    for step in (float(v) for grid in grids.values() for v in grid):
        assert np.isclose(theirs, step, rtol=1e-4).any(), step


def test_noise_is_one_step_wide_at_every_quantized_tensor_and_off_in_eval():
    model, x = _model(), torch.from_numpy(_images(2, seed=5))
    steps = calibrated_steps(model, _images())
    noisy = ActivationNoise(model, steps)
    seen = {}

    def spy(name, tensor):
        out = noisy.add_noise(name, tensor)
        seen[name] = (out - tensor).detach()
        return out

    with torch.no_grad():
        quantized_forward(model, x, spy)
    assert seen.keys() == steps.keys()  # noise at every tensor the export quantizes
    for name, difference in seen.items():
        step = steps[name]
        assert difference.abs().max() <= step / 2 * (1 + 1e-5) + 1e-7, name
        if difference.numel() >= 1000:  # U(-s/2, s/2): mean 0, standard deviation s / sqrt(12)
            assert abs(float(difference.mean())) < 0.05 * step, name
            assert float(difference.std()) == pytest.approx(step / 12 ** 0.5, rel=0.1), name
    with torch.no_grad():
        trained = noisy(x)
        noisy.eval()
        evaluated = noisy(x)
        reference = fold(model)(x)
    assert not torch.allclose(trained, reference, atol=1e-4)
    assert torch.allclose(evaluated, reference, atol=1e-5)  # eval mode is the plain folded network


def test_weight_noise_is_one_7bit_step_per_output_channel_and_off_in_eval_or_without_levels():
    model, x = _model(), torch.from_numpy(_images(1, seed=5))
    steps = {name: 0.0 for name in calibrated_steps(model, _images())}  # weights alone
    noisy = ActivationNoise(model, steps, weight_levels=64)
    for name, weight in [("head", model.head.weight), ("tail", model.tail.weight)]:
        grid = weight.detach().abs().amax(dim=(1, 2, 3), keepdim=True) / 64
        difference = (noisy.add_weight_noise(name, weight) - weight).detach()
        assert (difference.abs() <= grid / 2 * (1 + 1e-5)).all() and difference.abs().max() > grid.min() / 8, name
    with torch.no_grad():
        reference = fold(model)(x)
        assert not torch.allclose(noisy(x), reference, atol=1e-4)
        assert torch.allclose(ActivationNoise(model, steps)(x), reference, atol=1e-5)  # levels 0: weights exact
        noisy.eval()
        assert torch.allclose(noisy(x), reference, atol=1e-5)


def test_zero_noise_steps_give_the_folded_network_exactly():
    """The noisy pass computes the exported graph: with every step 0 it is the folded network."""
    model, x = _model(), torch.from_numpy(_images(1))
    steps = {name: 0.0 for name in calibrated_steps(model, _images())}
    with torch.no_grad():
        assert torch.allclose(ActivationNoise(model, steps)(x), fold(model)(x), atol=1e-5)


@pytest.fixture
def noise_config(tmp_path, data):
    folder, photos = data
    calib = build_calibration_set(photos, tmp_path / "calib", count=1, size_hw=(24, 24), seed=0)
    return tiny_config(data, optim={"steps": 6, "lr_milestones": [2, 4], "activation_noise": "calibrated-8bit",
                                    "noise_calibration": str(calib)})


@pytest.mark.parametrize("kill_at", [1, 3])
def test_noisy_training_resumes_bit_identically(tmp_path, noise_config, kill_at):
    train(start_session(noise_config, tmp_path / "whole"), progress=False)
    broken = start_session(noise_config, tmp_path / "broken")
    with pytest.raises(Interrupted):
        train(broken, progress=False, on_step=_interrupt_at(kill_at))
    resumed = resume_session(tmp_path / "broken", [])
    train(resumed, progress=False)
    assert_identical(tmp_path / "whole" / "final.safetensors", tmp_path / "broken" / "final.safetensors")


def test_weight_noise_is_its_own_setting_and_named_on_the_model_card(tmp_path, data, noise_config):
    calibration = noise_config.optim.noise_calibration
    both = tiny_config(data, optim={"steps": 6, "lr_milestones": [2, 4], "noise_calibration": calibration,
                                    "activation_noise": "calibrated-8bit+weights-7bit"})
    assert learning_sections_sha256(both) != learning_sections_sha256(noise_config)
    train(start_session(noise_config, tmp_path / "activations"), progress=False)
    train(start_session(both, tmp_path / "both"), progress=False)
    from test_train_run import weights
    assert not torch.equal(weights(tmp_path / "activations" / "final.safetensors")["head.weight"],
                           weights(tmp_path / "both" / "final.safetensors")["head.weight"])
    from treefuse.train.model_card import write_model_card
    assert "7-bit per-channel grid at every conv weight" in write_model_card(tmp_path / "both", "").read_text()
    assert "7-bit" not in write_model_card(tmp_path / "activations", "").read_text()


def test_noise_changes_what_is_learned_and_its_hash(tmp_path, data, noise_config):
    plain = tiny_config(data, optim={"steps": 6, "lr_milestones": [2, 4]})
    assert learning_sections_sha256(plain) != learning_sections_sha256(noise_config)
    train(start_session(plain, tmp_path / "plain"), progress=False)
    train(start_session(noise_config, tmp_path / "noisy"), progress=False)
    from test_train_run import weights
    assert not torch.equal(weights(tmp_path / "plain" / "final.safetensors")["head.weight"],
                           weights(tmp_path / "noisy" / "final.safetensors")["head.weight"])
    manifest = (tmp_path / "noisy" / "data_manifest.json").read_text()
    assert "noise_calibration" in manifest and "images.npy" in manifest
    from treefuse.train.model_card import write_model_card
    assert "Activation noise: calibrated-8bit" in write_model_card(tmp_path / "noisy", "").read_text()
    assert "Activation noise" not in write_model_card(tmp_path / "plain", "").read_text()


@pytest.mark.parametrize("optim, message", [({"activation_noise": "int4"}, "must be one of"),
                                            ({"activation_noise": "calibrated-8bit"}, "go together"),
                                            ({"noise_calibration": "calib/"}, "go together")])
def test_bad_noise_settings_are_refused(data, optim, message):
    with pytest.raises(TreefuseError, match=message):
        tiny_config(data, optim=optim)


def test_a_missing_calibration_set_is_refused_before_the_run_folder(tmp_path, data):
    config = tiny_config(data, optim={"activation_noise": "calibrated-8bit", "noise_calibration": str(tmp_path / "no")})
    with pytest.raises(TreefuseError, match="not a calibration set"):
        start_session(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_calibration_set_round_trip_is_what_the_trainer_reads(tmp_path, noise_config):
    session = start_session(noise_config, tmp_path / "run")
    images = load_calibration_set(noise_config.optim.noise_calibration).images
    expected = calibrated_steps(session.trainer.model, images)
    assert session.trainer.network.steps == expected
