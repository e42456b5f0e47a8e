"""Outputs never destroy what the user has: other kinds refused, folders swapped whole, JSON strict."""
import json

import pytest

from treefuse.errors import TreefuseError
from treefuse.files import atomic_path, check_output_folder, write_json_atomic


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
