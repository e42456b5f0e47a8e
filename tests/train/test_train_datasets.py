"""Loaders for the four dataset layouts, and one-line errors for broken pairs."""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from treefuse.errors import TreefuseError
from treefuse.train.datasets import clean_photo_files, find_pairs, load_pairs, parse_range

RNG = np.random.default_rng(0)


def _save(path: Path, array: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return array


def _image(height=32, width=48):
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def test_paired_layout(tmp_path):
    rain = _save(tmp_path / "rain" / "001.png", _image())
    clean = _save(tmp_path / "clean" / "001.png", _image())
    _save(tmp_path / "rain" / "002.png", _image()), _save(tmp_path / "clean" / "002.png", _image())
    pairs, files = load_pairs([str(tmp_path)])
    assert [p.key for p in pairs] == ["001", "002"]
    assert np.array_equal(pairs[0].rain, rain) and np.array_equal(pairs[0].clean, clean)
    assert pairs[0].rain.dtype == np.uint8  # decoded once, kept as uint8


def test_rain100h_layout_and_range(tmp_path):
    for n in (1, 2, 3):
        _save(tmp_path / f"rain-{n:03d}.png", _image()), _save(tmp_path / f"norain-{n:03d}.png", _image())
    pairs, _ = load_pairs([str(tmp_path)], "002-003")
    assert [p.key for p in pairs] == ["002", "003"]


def test_rain1400_layout_groups_renderings(tmp_path):
    truth = _save(tmp_path / "ground_truth" / "7.jpg", _image())
    for k in (1, 2):
        _save(tmp_path / "rainy_image" / f"7_{k}.jpg", _image())
    files = find_pairs(str(tmp_path))
    assert [(f.key, f.number) for f in files] == [("7_1", 7), ("7_2", 7)]
    assert all(f.clean.name == "7.jpg" for f in files)
    pairs, _ = load_pairs([str(tmp_path)])
    assert pairs[0].clean.shape == truth.shape


def test_side_by_side_layout_splits_halves(tmp_path):
    rain, clean = _image(), _image()
    _save(tmp_path / "12.png", np.concatenate([rain, clean], axis=1))
    pairs, _ = load_pairs([f"side_by_side:{tmp_path}"])
    assert np.array_equal(pairs[0].rain, rain) and np.array_equal(pairs[0].clean, clean)


def test_missing_partner_names_the_file(tmp_path):
    _save(tmp_path / "rain" / "001.png", _image())
    (tmp_path / "clean").mkdir()
    with pytest.raises(TreefuseError, match="001.png has no clean partner"):
        load_pairs([str(tmp_path)])


def test_rain1400_missing_ground_truth(tmp_path):
    _save(tmp_path / "rainy_image" / "3_1.jpg", _image())
    (tmp_path / "ground_truth").mkdir()
    with pytest.raises(TreefuseError, match="3_1.jpg has no clean partner"):
        load_pairs([str(tmp_path)])


def test_size_mismatch_names_both_files(tmp_path):
    _save(tmp_path / "rain" / "001.png", _image(32, 48))
    _save(tmp_path / "clean" / "001.png", _image(32, 40))
    with pytest.raises(TreefuseError, match=r"001.png is 48x32 but its clean partner .* is 40x32"):
        load_pairs([str(tmp_path)])


def test_unreadable_image(tmp_path):
    (tmp_path / "rain").mkdir(), (tmp_path / "clean").mkdir()
    (tmp_path / "rain" / "001.png").write_bytes(b"not a png")
    _save(tmp_path / "clean" / "001.png", _image())
    with pytest.raises(TreefuseError, match="not a readable image"):
        load_pairs([str(tmp_path)])


@pytest.mark.parametrize("make", ["missing", "empty", "empty_paired"])
def test_missing_or_empty_folder(tmp_path, make):
    folder = tmp_path / "data"
    if make == "empty":
        folder.mkdir()
    if make == "empty_paired":
        (folder / "rain").mkdir(parents=True), (folder / "clean").mkdir()
    with pytest.raises(TreefuseError) as info:
        load_pairs([str(folder)])
    assert str(folder) in str(info.value) and "\n" not in str(info.value)


def test_range_selecting_nothing_is_an_error(tmp_path):
    _save(tmp_path / "rain" / "001.png", _image()), _save(tmp_path / "clean" / "001.png", _image())
    with pytest.raises(TreefuseError, match="no pairs numbered"):
        load_pairs([str(tmp_path)], "041-050")


def test_parse_range():
    assert parse_range("001-040, 45") == [(1, 40), (45, 45)]
    assert parse_range("") == []
    with pytest.raises(TreefuseError):
        parse_range("40-1")
    with pytest.raises(TreefuseError):
        parse_range("a-b")


def test_clean_photos_are_found_recursively(tmp_path):
    _save(tmp_path / "set1" / "a.png", _image()), _save(tmp_path / "set2" / "b.jpg", _image())
    assert [p.name for p in clean_photo_files(tmp_path)] == ["a.png", "b.jpg"]
    with pytest.raises(TreefuseError, match="holds no images"):
        clean_photo_files(_empty(tmp_path))


def _empty(tmp_path):
    (tmp_path / "nothing").mkdir()
    return tmp_path / "nothing"
