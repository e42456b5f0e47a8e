"""`run.py --layers` on a device, `treefuse diff --cand-layers` at home: the device's first wrong layer comes back."""
from __future__ import annotations

import json

import numpy as np

from treefuse.cli import main
from treefuse.results import result_from_json


def test_device_layers_come_home_and_match_the_reference(onnx_bundle, run_bundle, shipped_weights, tmp_path):
    layers = tmp_path / "device.layers.npz"
    done = run_bundle(onnx_bundle, "--layers", str(layers), "--iters", "1", "--threads", "1")
    assert done.returncode == 0, done.stderr
    with np.load(layers, allow_pickle=False) as saved:
        meta = json.loads(str(saved["meta"]))
        assert meta["candidate"]["kind"] == "onnx" and len(meta["images"]) == 2
        assert saved["layers/0/blocks.2.pairs.0.conv_a"].shape == saved["input/0"].shape[:1] + (16, 32, 32)
    out = tmp_path / "diff.json"
    assert main(["diff", "--ref", f"torch:{shipped_weights}", "--cand-layers", str(layers), "--json", str(out)]) == 0
    result = result_from_json(json.loads(out.read_text()), str(out))
    assert result.first_diverging_layer is None and result.unmatched["reference_only"] == []
    assert result.candidate["device"]["cpu"]["model"] and result.gates["min_layer_psnr_db"] == 60

    # One recorded layer off: the diff names it, and nothing before it.
    with np.load(layers, allow_pickle=False) as saved:
        arrays = {key: saved[key] for key in saved.files}
    arrays["layers/1/blocks.2.pairs.0.conv_a"] = arrays["layers/1/blocks.2.pairs.0.conv_a"] * 1.5
    tampered = tmp_path / "tampered.layers.npz"
    np.savez(tampered, **arrays)
    assert main(["diff", "--ref", f"torch:{shipped_weights}", "--cand-layers", str(tampered), "--json", str(out)]) == 0
    result = result_from_json(json.loads(out.read_text()), str(out))
    assert result.first_diverging_layer == "blocks.2.pairs.0.conv_a"
    assert [image["first_diverging_layer"] for image in result.images] == [None, "blocks.2.pairs.0.conv_a"]


def test_a_file_that_is_not_recorded_layers_is_one_line(tmp_path, shipped_weights, capsys):
    bogus = tmp_path / "x.npz"
    np.savez(bogus, a=np.zeros(3))
    assert main(["diff", "--ref", f"torch:{shipped_weights}", "--cand-layers", str(bogus)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run.py --layers" in err


def test_cand_and_cand_layers_are_exclusive(tmp_path, shipped_weights, capsys):
    assert main(["diff", "--ref", f"torch:{shipped_weights}", "--cand-layers", "x.npz", "--cand", "onnx:m.onnx"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
