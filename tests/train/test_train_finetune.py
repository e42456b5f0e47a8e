"""Fine-tuning on a camera's pairs: a tiny run gives weights and a model card; bad input is refused."""
import json

import numpy as np
import pytest
import torch

from treefuse.checkpoint import load_weights, save_weights
from treefuse.cli import main
from treefuse.config import ModelConfig
from treefuse.images import write_image
from treefuse.model import TreeFusionNet
from treefuse.data.synth_pairs import synth_folder

TINY = ["--set", "data.patch_size=24", "--set", "data.batch_size=2", "--set", "speed.device=cpu",
        "--set", "speed.precision=fp32", "--set", "speed.threads=1", "--no-progress"]


@pytest.fixture
def camera(tmp_path):
    """Tiny initial weights and a synth-made paired folder of four 40x48 pairs (numbers 0-3)."""
    torch.manual_seed(0)
    weights = save_weights(TreeFusionNet(ModelConfig(channels=4, blocks=2)), tmp_path / "init.safetensors", note="test")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        write_image(tmp_path / "frames" / f"{name}.png", rng.random((40, 48, 3)).astype(np.float32))
    synth_folder(tmp_path / "frames", tmp_path / "pairs", count=4, seed=1)
    synth_folder(tmp_path / "frames", tmp_path / "valpairs", count=2, seed=2)
    return weights, tmp_path / "pairs", tmp_path / "valpairs"


def _train(capsys, *argv):
    code = main(["train", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def test_tiny_finetune_writes_weights_and_model_card(camera, tmp_path, capsys):
    weights, pairs, _ = camera
    run = tmp_path / "run"
    code, out, _ = _train(capsys, "--init", weights, "--data", pairs, "--val", "3", "--steps", 3, "--out", run, *TINY)
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["step"] == 3 and summary["model_card"].endswith("MODEL_CARD.md")
    final = load_weights(run / "final.safetensors")
    assert final.config == ModelConfig(channels=4, blocks=2) and final.provenance["steps"] == 3
    assert final.provenance["validation_split"] == f"{pairs}:3"
    start = load_weights(weights).model.state_dict()
    assert any(not torch.equal(start[k], v) for k, v in final.model.state_dict().items())  # it trained
    manifest = json.loads((run / "data_manifest.json").read_text())["files"]
    assert [e["path"].split("/")[-1] for e in manifest["train_rain"]] == ["0000_a.png", "0001_b.png", "0002_a.png"]
    card = (run / "MODEL_CARD.md").read_text()
    for expected in ("init.safetensors", "Training pairs: 3", f"`{pairs}:3`: 1 pairs", "rainy input itself",
                     "initial weights (step 0)", "final (step 3)", "treefuse train --init", "Steps: 3"):
        assert expected in card, expected
    scores = json.loads((run / "init_scores.json").read_text())
    assert scores["pairs"] == 1 and scores["input_psnr_y_db"] < 40


def test_validation_on_another_folder_and_card_can_be_rewritten(camera, tmp_path, capsys):
    weights, pairs, valpairs = camera
    run = tmp_path / "run"
    assert _train(capsys, "--init", weights, "--data", pairs, "--val", valpairs, "--steps", 2, "--out", run, *TINY)[0] == 0
    (run / "MODEL_CARD.md").unlink()
    assert _train(capsys, "--card", run)[0] == 0
    card = (run / "MODEL_CARD.md").read_text()
    assert "Training pairs: 4" in card and f"`{valpairs}`: 2 pairs" in card


@pytest.mark.parametrize("case", ["init_missing", "val_no_such_pair", "val_everything", "val_not_range",
                                  "data_not_pairs", "with_config", "no_out", "steps_zero", "card_unfinished"])
def test_bad_finetune_input_is_exit_2_one_line_nothing_written(case, camera, tmp_path, capsys):
    weights, pairs, _ = camera
    run = tmp_path / "run"
    args = ["--init", weights, "--data", pairs, "--val", "3", "--steps", 2, "--out", run]
    if case == "init_missing":
        args[1] = tmp_path / "nope.safetensors"
    elif case == "val_no_such_pair":
        args[5] = "9"
    elif case == "val_everything":
        args[5] = "0-3"
    elif case == "val_not_range":
        args[5] = "last-ten"
    elif case == "data_not_pairs":
        args[3] = tmp_path / "frames"
    elif case == "with_config":
        args += ["--config", "quick"]
    elif case == "no_out":
        args = args[:-2]
    elif case == "steps_zero":
        args[7] = 0
    elif case == "card_unfinished":
        (run / "checkpoints").mkdir(parents=True)
        args = ["--card", tmp_path / "frames"]
    code, out, err = _train(capsys, *args, *TINY)
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("treefuse: error: ")
    assert not (run / "config.yaml").exists() and not (run / "final.safetensors").exists()
