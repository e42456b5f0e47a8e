"""Calibration sets: deterministic builds, hashes, tamper detection, bad input."""
from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from treefuse.calib.build import build_calibration_set
from treefuse.calib.store import CalibrationSet, load_calibration_set, verify_calibration_set
from treefuse.errors import GateFailed, TreefuseError

from media import write_images




@pytest.fixture()
def images(tmp_path):
    return write_images(tmp_path / "images", 5)


def test_build_writes_images_and_manifest(images, tmp_path):
    out = build_calibration_set(images, tmp_path / "calib", count=3, size_hw=(32, 48), seed=7)
    loaded = load_calibration_set(out)
    assert isinstance(loaded, CalibrationSet)
    assert loaded.images.shape == (3, 3, 32, 48) and loaded.images.dtype == np.float32
    assert 0.0 <= loaded.images.min() and loaded.images.max() <= 1.0
    manifest = loaded.manifest
    assert manifest["seed"] == 7 and len(manifest["sources"]) == 3
    assert all(len(s["sha256"]) == 64 and s["crop_box"]["height"] == 32 for s in manifest["sources"])
    assert manifest["sha256"] == loaded.sha256
    assert "tool_versions" in manifest["provenance"]


def test_crop_matches_source_pixels(images, tmp_path):
    loaded = load_calibration_set(build_calibration_set(images, tmp_path / "c", 2, (16, 16), seed=1))
    source = loaded.manifest["sources"][0]
    box = source["crop_box"]
    pixels = np.asarray(Image.open(images / source["file"]), dtype=np.float32) / 255.0
    expected = pixels[box["top"]:box["top"] + 16, box["left"]:box["left"] + 16].transpose(2, 0, 1)
    np.testing.assert_array_equal(loaded.images[0], expected)


def test_same_inputs_same_hash_other_seed_other_hash(images, tmp_path):
    first = load_calibration_set(build_calibration_set(images, tmp_path / "a", 3, (32, 48), seed=3))
    again = load_calibration_set(build_calibration_set(images, tmp_path / "b", 3, (32, 48), seed=3))
    other = load_calibration_set(build_calibration_set(images, tmp_path / "c", 3, (32, 48), seed=4))
    assert first.sha256 == again.sha256
    assert first.sha256 != other.sha256


def test_small_images_are_scaled_up_to_fit(tmp_path):
    folder = write_images(tmp_path / "small", 2, size_hw=(20, 30))
    loaded = load_calibration_set(build_calibration_set(folder, tmp_path / "c", 2, (32, 48), seed=0))
    assert loaded.images.shape == (2, 3, 32, 48)
    assert loaded.manifest["sources"][0]["resized_hw"] == [32, 48]


def test_paired_folder_uses_rain_half(tmp_path):
    write_images(tmp_path / "paired" / "rain", 2)
    write_images(tmp_path / "paired" / "clean", 2, seed=1)
    loaded = load_calibration_set(build_calibration_set(tmp_path / "paired", tmp_path / "c", 2, (16, 16), 0))
    rain_sha = {s["sha256"] for s in loaded.manifest["sources"]}
    from treefuse.files import sha256_file
    assert rain_sha == {sha256_file(p) for p in (tmp_path / "paired" / "rain").iterdir()}


def test_tampered_tensor_fails_verify(images, tmp_path):
    out = build_calibration_set(images, tmp_path / "c", 2, (16, 16), 0)
    data = np.load(out / "images.npy")
    data[0, 0, 0, 0] = 1.0 - data[0, 0, 0, 0]
    np.save(out / "images.npy", data)
    with pytest.raises(GateFailed, match="changed"):
        verify_calibration_set(out)
    with pytest.raises(TreefuseError, match="corrupt"):
        load_calibration_set(out)


def test_tampered_manifest_fails_verify(images, tmp_path):
    out = build_calibration_set(images, tmp_path / "c", 2, (16, 16), 0)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["sources"][0]["crop_box"]["top"] += 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(GateFailed):
        verify_calibration_set(out)


def test_missing_tensor_is_changed_not_missing_set(images, tmp_path):
    out = build_calibration_set(images, tmp_path / "c", 2, (16, 16), 0)
    (out / "images.npy").unlink()
    with pytest.raises(GateFailed, match="missing"):
        verify_calibration_set(out)


def test_pickled_tensor_is_refused(images, tmp_path):
    out = build_calibration_set(images, tmp_path / "c", 2, (16, 16), 0)
    np.save(out / "images.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(GateFailed):
        verify_calibration_set(out)


def test_not_a_set(tmp_path):
    with pytest.raises(TreefuseError, match="not a calibration set"):
        verify_calibration_set(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(TreefuseError, match="not valid JSON"):
        load_calibration_set(tmp_path)


def test_bad_input_writes_nothing(tmp_path, images):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TreefuseError, match="no images"):
        build_calibration_set(tmp_path / "empty", tmp_path / "c", 1, (16, 16), 0)
    with pytest.raises(TreefuseError, match="fewer than --count 9"):
        build_calibration_set(images, tmp_path / "c", 9, (16, 16), 0)
    assert not (tmp_path / "c").exists()
    assert {p.name for p in tmp_path.iterdir()} == {"empty", "images"}


@dataclass
class FakeRainParams:
    strength: float

    def to_dict(self):
        return {"strength": self.strength}


def test_synthetic_rain_is_applied_and_recorded(images, tmp_path, monkeypatch):
    def add_synthetic_rain(clean, rng, params=None):
        strength = float(rng.uniform(0.1, 0.2))
        return np.clip(clean + strength, 0, 1), FakeRainParams(strength)

    module = types.ModuleType("treefuse.data.synthetic_rain")
    module.add_synthetic_rain = add_synthetic_rain
    monkeypatch.setitem(sys.modules, "treefuse.data.synthetic_rain", module)
    clean = load_calibration_set(build_calibration_set(images, tmp_path / "clean", 2, (16, 16), 0))
    rainy = load_calibration_set(build_calibration_set(images, tmp_path / "rainy", 2, (16, 16), 0, synthetic_rain=True))
    assert rainy.manifest["synthetic_rain"] is True
    strength = rainy.manifest["sources"][0]["rain_params"]["strength"]
    assert 0.1 <= strength <= 0.2
    np.testing.assert_allclose(rainy.images[0], np.clip(clean.images[0] + strength, 0, 1), atol=1e-6)
    assert rainy.sha256 != clean.sha256


def test_real_synthetic_rain_is_deterministic(images, tmp_path):
    pytest.importorskip("treefuse.data.synthetic_rain", reason="treefuse.data.synthetic_rain is not in this tree yet")
    first = load_calibration_set(build_calibration_set(images, tmp_path / "a", 2, (32, 32), 5, synthetic_rain=True))
    again = load_calibration_set(build_calibration_set(images, tmp_path / "b", 2, (32, 32), 5, synthetic_rain=True))
    assert first.sha256 == again.sha256
    assert {"angle_deg", "density", "seed"} <= set(first.manifest["sources"][0]["rain_params"])


def test_rebuild_replaces_a_set_but_never_other_data(images, tmp_path):
    out = build_calibration_set(images, tmp_path / "c", 2, (16, 16), 0)
    build_calibration_set(images, out, 3, (16, 16), 0)
    assert load_calibration_set(out).images.shape[0] == 3
    precious = tmp_path / "photos"
    precious.mkdir()
    (precious / "holiday.png").write_bytes(b"not mine to delete")
    with pytest.raises(TreefuseError, match="not a calibration set"):
        build_calibration_set(images, precious, 2, (16, 16), 0)
    assert (precious / "holiday.png").read_bytes() == b"not mine to delete"
