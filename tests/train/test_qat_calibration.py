"""The observer schemes' starting ranges cover the whole calibration set, not only its first batch."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from treefuse.export.observed_qat import calibrate


def prepared(target, weights):
    if target == "xnnpack-int8":
        from treefuse.export.pt2e.qat import prepare_network
        return prepare_network(weights)
    from treefuse.export.coreml.qat import prepare_network
    return prepare_network(weights)[1]


def input_range(network):
    """(min, max) the first activation fake-quantizer (the network's input) will represent."""
    for module in network.modules():
        if hasattr(module, "activation_post_process") and module.scale.numel() == 1:
            scale, zero = float(module.scale), float(module.zero_point)
            return (module.quant_min - zero) * scale, (module.quant_max - zero) * scale
    raise AssertionError("no activation fake-quantizer")


@pytest.mark.parametrize("target", ["xnnpack-int8", "coreml-w8a8"])
def test_a_bright_image_in_a_later_batch_widens_the_starting_range(target, tiny_weights):
    images = np.full((8, 3, 16, 16), 0.25, np.float32)
    images[6, :, :4, :4] = 1.0  # the brightest pixels sit in the second batch of four
    network = prepared(target, tiny_weights)
    calibrate(network, images)
    low, high = input_range(network)
    assert high >= 0.99 and low <= 0.0  # a moving average of batch ranges would stop near 0.26
    scale = (high - low) / 255
    assert high <= 1.0 + 2 * scale  # and no wider than the set needs


def test_calibration_leaves_the_observers_averaging_constant_as_it_was(tiny_weights):
    network = prepared("xnnpack-int8", tiny_weights)
    before = [m.averaging_constant for m in network.modules() if hasattr(m, "averaging_constant")]
    calibrate(network, np.random.default_rng(0).random((5, 3, 16, 16), dtype=np.float32))
    assert [m.averaging_constant for m in network.modules() if hasattr(m, "averaging_constant")] == before


@pytest.fixture(scope="module")
def calib_set(tmp_path_factory):
    from treefuse.calib.build import build_calibration_set
    from media import write_images

    root = tmp_path_factory.mktemp("calib")
    return build_calibration_set(write_images(root / "images", 3), root / "set", 3, (32, 32), seed=0)


def qat(weights, pairs, calib, out, target, *extra):
    from treefuse.cli import main

    return main(["qat", "--weights", str(weights), "--data", str(pairs), "--calib", str(calib), "--target", target,
                 "--steps", "2", "--patch", "16", "--batch", "1", "--synthetic-fraction", "0", "--out", str(out),
                 *extra])


def ranges(state):
    return {name: value for name, value in state.items() if name.endswith(("min_val", "max_val"))}


def test_observer_targets_train_the_weights_inside_the_calibrated_ranges_by_default(tiny_weights, paired_dir,
                                                                                      calib_set, tmp_path):
    from treefuse.qat_run import BASE_DIR, START_NAME, read_learned, read_settings, read_state

    frozen, tracking = tmp_path / "frozen", tmp_path / "tracking"
    assert qat(tiny_weights, paired_dir, calib_set, frozen, "xnnpack-int8") == 0  # the target's recipe: ranges kept
    assert qat(tiny_weights, paired_dir, calib_set, tracking, "xnnpack-int8", "--freeze-ranges-at", "2") == 0
    assert read_settings(frozen)["freeze_observers_step"] == 0
    for run, moved in ((frozen, False), (tracking, True)):
        start, _ = read_state(run / BASE_DIR / START_NAME, "")
        learned, _ = read_learned(run)
        changed = [n for n, v in ranges(learned).items() if not torch.equal(v, start[n])]
        assert bool(changed) == moved, run.name


@pytest.mark.parametrize("extra, problem", [
    (["--target", "ort-qdq", "--freeze-ranges-at", "0"], "applies to xnnpack-int8 and coreml-w8a8 only"),
    (["--target", "xnnpack-int8", "--freeze-ranges-at", "3"], "between 0 and --steps"),
])
def test_freeze_ranges_at_is_refused_where_it_means_nothing(tiny_weights, paired_dir, calib_set, tmp_path, capsys,
                                                            extra, problem):
    from treefuse.cli import main

    code = main(["qat", "--weights", str(tiny_weights), "--data", str(paired_dir), "--calib", str(calib_set),
                 "--steps", "2", "--out", str(tmp_path / "run"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and problem in err[0]
    assert not (tmp_path / "run").exists()
