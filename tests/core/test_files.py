"""Outputs never destroy what the user has: other kinds refused, folders swapped whole, JSON strict."""
import json

import pytest

from treefuse.errors import TreefuseError
from treefuse.files import COMPANION_MARK, atomic_path, check_output_folder, write_json_atomic


def test_a_folder_where_a_file_goes_is_refused_and_untouched(tmp_path):
    (tmp_path / "m.onnx").mkdir()
    (tmp_path / "m.onnx" / "photo.jpg").write_bytes(b"mine")
    with pytest.raises(TreefuseError, match="is a folder"):
        with atomic_path(tmp_path / "m.onnx") as staged:
            staged.write_text("model")
    assert (tmp_path / "m.onnx" / "photo.jpg").read_bytes() == b"mine"


def test_a_users_folder_is_never_replaced_by_an_artifact_folder(tmp_path):
    target = tmp_path / "calib"
    target.mkdir()
    (target / "holiday.png").write_bytes(b"mine")
    for recogniser in (None, lambda folder: (folder / "manifest.json").is_file()):
        with pytest.raises(TreefuseError, match="holding something else"):
            with atomic_path(target, directory=True, same_kind=recogniser) as staged:
                (staged / "manifest.json").write_text("{}")
    assert sorted(p.name for p in target.iterdir()) == ["holiday.png"]


def test_an_artifact_folder_is_replaced_whole_and_no_staging_is_left(tmp_path):
    target = tmp_path / "set"
    for version in ("old", "new"):
        with atomic_path(target, directory=True, same_kind=lambda f: (f / "manifest.json").is_file()) as staged:
            (staged / "manifest.json").write_text(version)
            (staged / f"{version}.npy").write_text(version)
    assert sorted(p.name for p in target.iterdir()) == ["manifest.json", "new.npy"]
    assert [p.name for p in tmp_path.iterdir()] == ["set"]


def test_a_failed_write_leaves_the_old_artifact(tmp_path):
    target = tmp_path / "r.json"
    write_json_atomic(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as staged:
            staged.write_text("half")
            raise RuntimeError("killed mid-write")
    assert json.loads(target.read_text()) == {"v": 1}


def test_json_writes_infinity_as_text_and_refuses_nan(tmp_path):
    write_json_atomic(tmp_path / "a.json", {"psnr": float("inf")})
    assert float(json.loads((tmp_path / "a.json").read_text())["psnr"]) == float("inf")
    with pytest.raises(ValueError):
        write_json_atomic(tmp_path / "b.json", {"psnr": float("nan")})
    assert not (tmp_path / "b.json").exists()


def test_an_output_folder_may_hold_other_files_but_not_be_a_file(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "keep.txt").write_text("x")
    assert check_output_folder(tmp_path / "reports") == tmp_path / "reports"
    (tmp_path / "file").write_text("x")
    with pytest.raises(TreefuseError, match="is a file"):
        check_output_folder(tmp_path / "file")


def _write_with_companions(tmp_path, version: str, recipe_files=("model.onnx",)) -> None:
    with atomic_path(tmp_path / "m.rknn") as staged:
        staged.write_text(version)
        recipe = staged.with_name("m.rknn.sim")
        recipe.mkdir()
        for name in recipe_files:
            (recipe / name).write_text(version)
        staged.with_name("m.rknn.json").write_text(version)


def test_an_artifact_and_its_companions_land_together_and_a_later_export_replaces_them(tmp_path):
    _write_with_companions(tmp_path, "old", ("model.model", "quantization.cfg"))
    _write_with_companions(tmp_path, "new")  # another mode: other recipe files, the old folder marked as a companion
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.rknn", "m.rknn.json", "m.rknn.sim"]
    assert (tmp_path / "m.rknn").read_text() == (tmp_path / "m.rknn.json").read_text() == "new"
    assert sorted(p.name for p in (tmp_path / "m.rknn.sim").iterdir()) == [COMPANION_MARK, "model.onnx"]


def test_a_users_folder_where_a_companion_goes_is_refused_and_nothing_moves(tmp_path):
    (tmp_path / "m.rknn.sim").mkdir()
    (tmp_path / "m.rknn.sim" / "holiday.png").write_bytes(b"mine")
    with pytest.raises(TreefuseError, match="holding something else"):
        _write_with_companions(tmp_path, "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.rknn.sim"]
    assert [p.name for p in (tmp_path / "m.rknn.sim").iterdir()] == ["holiday.png"]


def test_a_failed_conversion_moves_no_companion(tmp_path):
    with pytest.raises(ValueError):
        with atomic_path(tmp_path / "m.pte") as staged:
            staged.write_text("program")
            staged.with_name("m.pte.json").write_text("{}")
            raise ValueError("the check failed")
    assert list(tmp_path.iterdir()) == []


def test_a_companion_not_named_after_its_artifact_is_a_bug(tmp_path):
    with pytest.raises(RuntimeError, match="named after it"):
        with atomic_path(tmp_path / "m.pte") as staged:
            staged.write_text("program")
            staged.with_name("other.json").write_text("{}")
    assert list(tmp_path.iterdir()) == []

