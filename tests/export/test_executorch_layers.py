"""The ExecuTorch layers program: the program's network with every layer as an output, under treefuse's layer names."""
from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("executorch", reason="ExecuTorch is not installed (pip install 'treefuse[executorch]')")

from treefuse.errors import TreefuseError  # noqa: E402
from treefuse.export.executorch.bundle_engine import ExecuTorchEngine, layers_program_path  # noqa: E402
from treefuse.export.executorch.layers import write_layers_program  # noqa: E402
from treefuse.runtimes.backends.registry import make_runner  # noqa: E402
from treefuse.runtimes.inspect.compare import compare_layers  # noqa: E402
from treefuse.runtimes.inspect.torch_layers import open_layers  # noqa: E402
from treefuse.sidecar import sidecar_path  # noqa: E402

from executorch_fixtures import RANGE, program_with_layers  # noqa: E402

pytestmark = pytest.mark.slow  # each program is exported and lowered once per module: seconds


@pytest.fixture(scope="module")
def int8_program(tiny_coreml_weights, tmp_path_factory):
    return program_with_layers(tiny_coreml_weights, tmp_path_factory.mktemp("et_layers8"), "int8")


def torch_layers(weights, batch):
    with make_runner(f"torch:{weights}") as runner:
        return open_layers(runner)(batch)


def test_int8_output_layer_is_the_program_output(int8_program, tiny_coreml_weights):
    sidecar = json.loads(sidecar_path(layers_program_path(int8_program)).read_text())["provenance"]
    assert sidecar["output_vs_program_max_abs_diff"] == 0.0 and sidecar["precision"] == "int8"
    assert sidecar["calibration_sha256"] == "c" * 64 and sidecar["layers"][-1] == "output"
    engine = ExecuTorchEngine(int8_program, 1)
    batch = np.random.default_rng(2).random((2, 3, 48, 32), dtype=np.float32)
    layers = engine.layers(batch)
    assert np.array_equal(layers["output"], engine.infer(batch))  # same recipe, same calibration: same arithmetic


def test_layers_are_torch_layers_name_for_name(int8_program, tiny_coreml_weights):
    batch = np.random.default_rng(1).random((1, 3, 24, 40), dtype=np.float32)
    layers = ExecuTorchEngine(int8_program, 1).layers(batch)
    reference = torch_layers(tiny_coreml_weights, batch)
    assert list(layers) == list(reference) and list(layers)[:2] == ["head", "blocks.0.pairs.0.conv_a"]
    rows = compare_layers(reference, layers)
    # Each 8-bit layer is close to the float layer of its name; a name on another tensor would be far off.
    assert len(rows) == len(reference) and all(25 < row["psnr_db"] < 80 for row in rows)


def test_a_layers_program_needs_its_program_first(tiny_coreml_weights, tmp_path):
    with pytest.raises(TreefuseError, match="export the program first"):
        write_layers_program(tiny_coreml_weights, tmp_path / "missing.pte", **RANGE)


def test_layers_are_refused_with_a_qat_run_in_one_line(tiny_coreml_weights, tmp_path, capsys):
    from treefuse.cli import main

    run = tmp_path / "run"
    run.mkdir()
    assert main(["export", "executorch", "--weights", str(tiny_coreml_weights), "--precision", "int8", "--qat", str(run),
                 "--layers", "--out", str(tmp_path / "m.pte")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--layers" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_diff_reads_every_layer_from_the_layers_program_beside_the_pte(int8_program, tiny_coreml_weights, paired_dir,
                                                                       tmp_path):
    from treefuse.cli import main
    from treefuse.results import result_from_json

    out = tmp_path / "diff.json"
    code = main(["diff", "--ref", f"torch:{tiny_coreml_weights}", "--cand", f"executorch:{int8_program}",
                 "--images", str(paired_dir / "rain"), "--crop", "32x32", "--json", str(out)])
    result = result_from_json(json.loads(out.read_text()), str(out))
    assert code in (0, 1) and result.unmatched == {"reference_only": [], "candidate_only": []}
    assert [row["layer"] for row in result.layers][:2] == ["head", "blocks.0.pairs.0.conv_a"]
    assert result.exposure_effect["candidate"] == 0.0  # the layers program computes the program's output exactly
