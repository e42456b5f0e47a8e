"""Training config: shipped YAMLs parse, overrides are typed, unknown keys are refused."""
import pytest

from treefuse.config import ModelConfig
from treefuse.errors import TreefuseError
from treefuse.train.train_config import TrainConfig, load_train_config, set_dotted


@pytest.mark.parametrize("name", ["paper", "quick"])
def test_shipped_configs_load(name):
    config = load_train_config(name)
    assert config.model == ModelConfig()  # the shipped recipes train the 35,427-parameter default
    assert config.data.val_range == "041-050" and config.data.train_range == "001-040"


def test_paper_config_is_the_papers_recipe():
    optim = load_train_config("paper").optim
    assert (optim.steps, optim.lr, optim.lr_milestones, optim.lr_gamma) == (300_000, 1e-3, (100_000, 200_000), 0.1)
    assert (optim.mse_weight, optim.ssim_weight) == (0.4, 0.6)
    data = load_train_config("paper").data
    assert (data.batch_size, data.patch_size) == (10, 100)


def test_overrides_are_applied_and_typed():
    config = load_train_config("quick", ["optim.steps=12", "optim.lr=1", "model.blocks=2", "data.train_dirs=[a, b]"])
    assert config.optim.steps == 12 and config.optim.lr == 1.0 and isinstance(config.optim.lr, float)
    assert load_train_config("quick", ["optim.lr=1e-4"]).optim.lr == 1e-4
    assert config.model.blocks == 2 and config.data.train_dirs == ("a", "b")


@pytest.mark.parametrize("override, words", [
    ("optim.stepz=3", "unknown key"),
    ("nosection.x=1", "unknown key"),
    ("optim.steps=many", "must be int"),
    ("optim.lr=fast", "must be float"),
    ("optim.steps=0", "at least 1"),
    ("speed.precision=fp8", "precision"),
    ("data.synthetic_fraction=2", "between 0 and 1"),
    ("model.within_fusion=max", "within_fusion"),
    ("optim.steps", "key=value"),
    ("data.synthetic_pool=-1", "synthetic_pool must be 0 or more"),
    ("speed.data_on_device=true", "needs pre-rendered synthetic rain"),
])
def test_bad_overrides_are_one_line_errors(override, words):
    with pytest.raises(TreefuseError, match=words) as info:
        load_train_config("quick", [override])
    assert "\n" not in str(info.value)


def test_round_trip_through_dict():
    config = load_train_config("paper", ["optim.seed=7"])
    assert TrainConfig.from_dict(config.to_dict()) == config


def test_missing_config_file_names_shipped_ones(tmp_path):
    with pytest.raises(TreefuseError, match="quick"):
        load_train_config(tmp_path / "nope.yaml")


def test_set_dotted_refuses_descending_into_a_value():
    data = {"optim": {"steps": 3}}
    with pytest.raises(TreefuseError, match="not a config section"):
        set_dotted(data, "optim.steps.x=1")


def test_precision_auto_follows_the_hardware_and_fp16_needs_cuda():
    import torch

    from treefuse.train.trainer import cpu_has_bf16, resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bf16" if cpu_has_bf16() else "fp32")
    assert resolve_precision("fp32", cpu) == "fp32"
    with pytest.raises(TreefuseError, match="fp16 needs a CUDA device"):
        resolve_precision("fp16", cpu)


def test_learning_rate_steps_down_at_the_milestones():
    from treefuse.train.trainer import learning_rate

    config = load_train_config("paper")
    rates = [learning_rate(config, s) for s in (0, 99_999, 100_000, 199_999, 200_000, 299_999)]
    assert rates == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])
