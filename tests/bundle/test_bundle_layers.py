"""`run.py --layers` on a device, `treefuse diff --cand-layers` at home: the device's first wrong layer comes back."""
from __future__ import annotations

import json

import numpy as np
import pytest

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


@pytest.fixture(scope="module")
def executorch_program(tiny_coreml_weights, tmp_path_factory):
    """A tiny FP32 ExecuTorch program with its layers program beside it."""
    pytest.importorskip("executorch", reason="ExecuTorch is not installed (pip install 'treefuse[executorch]')")
    from executorch_fixtures import program_with_layers

    return program_with_layers(tiny_coreml_weights, tmp_path_factory.mktemp("et"))


def pack_executorch(program, weights, images, out):
    return main(["pack", f"executorch:{program}", "--images", str(images), "--sizes", "32x32", "--count", "2",
                 "--ref", f"torch:{weights}", "--out", str(out)])


@pytest.mark.slow
def test_executorch_bundle_records_its_layers_for_diff(executorch_program, tiny_coreml_weights, paired_dir,
                                                       run_bundle, tmp_path):
    bundle = tmp_path / "et-bundle"
    assert pack_executorch(executorch_program, tiny_coreml_weights, paired_dir, bundle) == 0
    assert {"artifact/m.fp32.layers.pte", "artifact/m.fp32.layers.pte.json"} <= \
        set(json.loads((bundle / "manifest.json").read_text())["files"])
    layers, outputs = tmp_path / "device.layers.npz", tmp_path / "device.outputs.npz"
    done = run_bundle(bundle, "--layers", str(layers), "--save-outputs", str(outputs), "--iters", "1", "--threads", "1")
    assert done.returncode == 0, done.stderr
    with np.load(layers, allow_pickle=False) as saved, np.load(outputs, allow_pickle=False) as plain:
        assert json.loads(str(saved["meta"]))["candidate"]["kind"] == "executorch"
        # The golden crops are 32x32, as --layers' default crop takes them: the same inputs as the plain program's.
        assert np.array_equal(saved["layers/1/output"][0].transpose(1, 2, 0), plain["output_001"])
    out = tmp_path / "diff.json"
    assert main(["diff", "--ref", f"torch:{tiny_coreml_weights}", "--cand-layers", str(layers), "--json", str(out)]) == 0
    result = result_from_json(json.loads(out.read_text()), str(out))
    assert result.first_diverging_layer is None and result.unmatched == {"reference_only": [], "candidate_only": []}


@pytest.mark.slow
def test_pack_refuses_a_layers_program_of_other_bytes(executorch_program, tiny_coreml_weights, paired_dir,
                                                      tmp_path, capsys):
    import shutil

    folder = tmp_path / "stale"
    shutil.copytree(executorch_program.parent, folder)
    sidecar = folder / "m.fp32.layers.pte.json"
    record = json.loads(sidecar.read_text())
    record["provenance"]["program_sha256"] = "0" * 64  # as if m.pte had been exported again since
    sidecar.write_text(json.dumps(record))
    assert pack_executorch(folder / "m.fp32.pte", tiny_coreml_weights, paired_dir, tmp_path / "b") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "made for other bytes" in err and not (tmp_path / "b").exists()


@pytest.mark.slow
def test_executorch_bundle_without_its_layers_program_refuses_layers(executorch_program, tiny_coreml_weights,
                                                                     paired_dir, run_bundle, tmp_path):
    import shutil

    folder = tmp_path / "plain"
    folder.mkdir()
    for name in ("m.fp32.pte", "m.fp32.pte.json"):
        shutil.copyfile(executorch_program.parent / name, folder / name)
    bundle = tmp_path / "plain-bundle"
    assert pack_executorch(folder / "m.fp32.pte", tiny_coreml_weights, paired_dir, bundle) == 0
    done = run_bundle(bundle, "--layers", str(tmp_path / "l.npz"), "--iters", "1", "--threads", "1")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "m.fp32.layers.pte" in done.stderr
