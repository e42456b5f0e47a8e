"""A bundle packed here runs without torch or treefuse, keeps the exit contract, and comes home to the report."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from treefuse.errors import TreefuseError
from treefuse.results import BenchResult, ParityResult, result_from_json


def copy_of(bundle: Path, tmp_path: Path) -> Path:
    target = tmp_path / bundle.name
    shutil.copytree(bundle, target)
    return target


def test_bundle_runs_in_a_venv_without_torch(onnx_bundle, torch_free_python, run_bundle, tmp_path):
    out = tmp_path / "device.json"
    done = run_bundle(onnx_bundle, "--json", str(out), "--iters", "2", "--threads", "1", python=torch_free_python)
    assert done.returncode == 0, done.stderr
    parity = result_from_json(json.loads(out.read_text()), str(out))
    bench = result_from_json(json.loads(out.with_name("device.bench.json").read_text()))
    assert isinstance(parity, ParityResult) and isinstance(bench, BenchResult)
    assert parity.passed and parity.output_psnr_db["min"] >= parity.gates["min_output_psnr_db"] == 60.0
    assert parity.task is not None and len(parity.images) == 2
    assert parity.device["cpu"]["model"] and "torch" not in parity.device["versions"]
    assert parity.device["versions"]["onnxruntime"] and parity.provenance["bundle"]["manifest_sha256"]
    assert bench.backends[0]["latency_ms"]["p50"] > 0 and bench.backends[0]["timing"] == "device"
    assert not list(onnx_bundle.rglob("__pycache__")), "running a bundle must not write into it"


def test_pack_writes_a_hashed_bundle_with_no_pickles(onnx_bundle):
    manifest = json.loads((onnx_bundle / "manifest.json").read_text())
    assert {"golden.npz", "gates.json", "artifact.json", "bundle.json", "run.py"} <= set(manifest["files"])
    with np.load(onnx_bundle / "golden.npz", allow_pickle=False) as golden:
        assert golden["input_000"].dtype == np.uint8 and golden["reference_000"].dtype == np.float32
        assert golden["input_000"].shape == golden["clean_000"].shape == (32, 32, 3)
    artifact = json.loads((onnx_bundle / "artifact.json").read_text())
    assert artifact["source_sha256"] and artifact["precision"] == "fp32"


def test_tampered_artifact_is_refused(onnx_bundle, run_bundle, tmp_path):
    bundle = copy_of(onnx_bundle, tmp_path)
    model = next((bundle / "artifact").glob("*.onnx"))
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    done = run_bundle(bundle, "--iters", "1")
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "does not match its sha256" in done.stderr and model.name in done.stderr


def test_tampered_golden_output_is_refused(onnx_bundle, run_bundle, tmp_path):
    bundle = copy_of(onnx_bundle, tmp_path)
    with np.load(bundle / "golden.npz", allow_pickle=False) as golden:
        arrays = {key: golden[key] for key in golden.files}
    arrays["reference_000"] = arrays["reference_000"] * 0.5  # a forged golden output, re-saved as valid npz
    np.savez_compressed(bundle / "golden.npz", **arrays)
    done = run_bundle(bundle, "--iters", "1")
    assert done.returncode == 2 and "golden.npz" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_candidate_missing_its_gate_exits_1(committed_onnx, paired_dir, run_bundle, tmp_path):
    import onnx
    from onnx import numpy_helper

    from treefuse.bundle.pack import PackRequest, pack

    model = onnx.load(str(committed_onnx))
    weight = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))  # a 3x3 kernel of one block
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.05, weight.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    bundle = tmp_path / "broken-bundle"
    pack(PackRequest(f"onnx:{broken}", paired_dir, bundle, sizes=((32, 32),), count=1))
    out = tmp_path / "broken.json"
    done = run_bundle(bundle, "--json", str(out), "--iters", "1")
    assert done.returncode == 1, done.stderr
    result = json.loads(out.read_text())
    assert result["passed"] is False and "output PSNR min" in result["failures"][0]


def test_manifest_path_leaving_the_bundle_is_refused(onnx_bundle, run_bundle, tmp_path):
    bundle = copy_of(onnx_bundle, tmp_path)
    (tmp_path / "outside.txt").write_text("not the bundle's")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"]["../outside.txt"] = "0" * 64
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    done = run_bundle(bundle)
    assert done.returncode == 2 and "leaves the bundle" in done.stderr


def test_inside_refuses_paths_that_leave(tmp_path):
    from treefuse.portable.manifest import BundleError, inside

    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "link").symlink_to(tmp_path)
    for bad in ("/etc/passwd", "../x", "a/../../x", "link/x", "", "~/x", "a\\..\\x"):
        with pytest.raises(BundleError):
            inside(tmp_path / "b", bad)
    assert inside(tmp_path / "b", "artifact/m.onnx") == tmp_path / "b" / "artifact" / "m.onnx"


def test_pack_refuses_a_folder_of_other_files(paired_dir, committed_onnx, tmp_path):
    from treefuse.bundle.pack import PackRequest, pack

    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(TreefuseError, match="holding something else"):
        pack(PackRequest(f"onnx:{committed_onnx}", paired_dir, tmp_path / "mine", sizes=((32, 32),)))
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_pack_refuses_other_weights_as_reference(paired_dir, committed_onnx, weights_path, tmp_path):
    from treefuse.bundle.pack import PackRequest, pack

    with pytest.raises(TreefuseError, match="not the weights the artifact was made from"):
        pack(PackRequest(f"onnx:{committed_onnx}", paired_dir, tmp_path / "b", sizes=((32, 32),),
                         reference=f"torch:{weights_path}"))


def test_unwritable_output_is_one_line(onnx_bundle, run_bundle, tmp_path):
    (tmp_path / "taken").mkdir()
    done = run_bundle(onnx_bundle, "--json", str(tmp_path / "taken"), "--iters", "1")
    assert done.returncode == 2 and "cannot write" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def with_gates(bundle: Path, gates: dict) -> Path:
    """The bundle with its gates.json replaced and the manifest re-hashed (as a forger, or an older pack, would)."""
    from treefuse.portable.manifest import write_manifest

    (bundle / "gates.json").write_text(json.dumps(gates))
    files = list(json.loads((bundle / "manifest.json").read_text())["files"])
    write_manifest(bundle, files, {})
    return bundle


@pytest.mark.parametrize("key", ["min_output_psnr_db", "max_worst_task_drop_db"])
def test_a_forged_gate_is_refused_even_with_a_consistent_manifest(onnx_bundle, run_bundle, tmp_path, key):
    bundle = copy_of(onnx_bundle, tmp_path)
    gates = json.loads((bundle / "gates.json").read_text())
    done = run_bundle(with_gates(bundle, {**gates, key: "nan"}), "--iters", "1")
    assert done.returncode == 2 and "not a finite number" in done.stderr and key in done.stderr


def test_a_bundle_packed_before_the_worst_image_gate_runs_on_the_mean(onnx_bundle, run_bundle, tmp_path):
    bundle = copy_of(onnx_bundle, tmp_path)
    gates = json.loads((bundle / "gates.json").read_text())
    assert gates["max_worst_task_drop_db"] == 0.05  # pack writes the fp32 gates of today
    del gates["max_worst_task_drop_db"]
    out = tmp_path / "old.json"
    done = run_bundle(with_gates(bundle, gates), "--json", str(out), "--iters", "1")
    assert done.returncode == 0, done.stderr
    parity = json.loads(out.read_text())
    assert "max_worst_task_drop_db" not in parity["gates"] and parity["worst_image"]["image"]


def test_the_bundle_fails_on_its_worst_image_and_names_it(committed_onnx, paired_dir, run_bundle, tmp_path):
    import onnx
    from onnx import numpy_helper

    from treefuse.bundle.pack import PackRequest, pack

    model = onnx.load(str(committed_onnx))
    weight = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * 1.05, weight.name))
    changed = tmp_path / "changed.onnx"
    onnx.save(model, str(changed))
    bundle = tmp_path / "changed-bundle"
    pack(PackRequest(f"onnx:{changed}", paired_dir, bundle, sizes=((32, 32),), count=2))
    loose = {"min_output_psnr_db": 0.0, "max_task_drop_db": 50.0, "max_worst_task_drop_db": 50.0,
             "require_finite": True, "precision": "fp32"}
    out = tmp_path / "loose.json"
    assert run_bundle(with_gates(bundle, loose), "--json", str(out), "--iters", "1").returncode == 0
    worst = json.loads(out.read_text())["worst_image"]
    bound = round(-worst["task_delta_db"] - 0.0005, 4)  # just under what the worst image loses
    done = run_bundle(with_gates(bundle, {**loose, "max_worst_task_drop_db": bound}), "--json", str(out),
                      "--iters", "1")
    result = json.loads(out.read_text())
    assert done.returncode == 1, done.stderr
    assert result["failures"] == [f"image {worst['image']} loses {-worst['task_delta_db']:.3f} dB of task PSNR "
                                  f"> {bound:g} dB (worst image)"]
    assert f"worst image: {worst['image']}" in done.stdout
