"""Device results come home: their own section in the report, emulated latency marked, verified against the bundle."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from treefuse.report.verify import verify


@pytest.fixture(scope="module")
def device_results(onnx_bundle, run_bundle, tmp_path_factory):
    """This machine's parity and bench results of the bundle, and a copy relabelled as an emulated Arm64."""
    folder = tmp_path_factory.mktemp("results")
    done = run_bundle(onnx_bundle, "--json", str(folder / "x86.json"), "--iters", "2")
    assert done.returncode == 0, done.stderr
    for name in ("x86.json", "x86.bench.json"):
        data = json.loads((folder / name).read_text())
        data["device"].update(machine="aarch64", emulated=True,
                              cpu={"model": "emulated aarch64 (qemu-user on test)", "logical_cores": 2,
                                   "isa_flags": ["asimd", "asimddp"], "emulated": True})
        for backend in data.get("backends", []):
            backend["timing"] = "emulated"
        (folder / name.replace("x86", "arm")).write_text(json.dumps(data))
    return folder


def test_report_has_a_section_per_device_and_marks_emulation(device_results, tmp_path):
    from treefuse.report.build import write_report

    files = sorted(device_results.glob("*.json"))
    md_path, _ = write_report(files, tmp_path / "report")
    text = md_path.read_text()
    assert "## emulated aarch64 (qemu-user on test), 2 cores, asimd+asimddp" in text
    arm_section = text.split("## emulated aarch64")[1].split("\n## ")[0]
    assert " emulated" in arm_section.split("**Speed-up")[0]  # the latency cell is marked
    assert "—" in arm_section.split("**Speed-up")[1].split("**Throughput")[0]  # and kept out of ratios


def test_verify_checks_a_device_result_against_its_bundle(device_results, onnx_bundle, tmp_path):
    checks = verify([device_results / "x86.json", device_results / "x86.bench.json"], (onnx_bundle,))
    assert checks and all(c.status == "ok" for c in checks), checks
    bundle = tmp_path / onnx_bundle.name
    shutil.copytree(onnx_bundle, bundle)
    with np.load(bundle / "golden.npz", allow_pickle=False) as golden:
        arrays = {key: golden[key] for key in golden.files}
    np.savez_compressed(bundle / "golden.npz", **{**arrays, "reference_000": arrays["reference_000"] + 0.01})
    checks = verify([device_results / "x86.json"], (bundle,))
    assert any(c.failed and "golden.npz" in c.detail for c in checks), checks
    missing = verify([device_results / "x86.json"], (tmp_path / "nowhere",))
    assert [c.status for c in missing] == ["missing"]
