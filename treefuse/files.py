"""Hashing and atomic writes: nothing half-written is ever left where an output belongs.

Outputs are staged beside their target in a hidden `.NAME.*.tmp` folder and moved into
place by rename. A folder replaces a folder by an atomic exchange (Linux `renameat2`), so a
kill at any instant leaves the old artifact or the new one whole. An output path that holds
something of another kind (a folder where a file goes, a user's folder where an artifact
folder goes) is refused before anything is written.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from treefuse.errors import TreefuseError
from treefuse.portable.manifest import sha256_file as _sha256_of_file
from treefuse.portable.records import infinities_as_text

STAGING_SUFFIX = ".tmp"
COMPANION_MARK = ".treefuse-companion"  # in a folder written beside an artifact, so a later export may replace it


def sha256_file(path: str | Path) -> str:
    """sha256 of a file's bytes, or of a directory's files (names and bytes, sorted)."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_dir():
        for child in sorted(p for p in path.rglob("*") if p.is_file()):
            digest.update(str(child.relative_to(path)).encode())
            digest.update(bytes.fromhex(sha256_file(child)))
        return digest.hexdigest()
    return _sha256_of_file(path)


def is_staging_debris(path: str | Path) -> bool:
    """True for the hidden staging folders atomic_path leaves behind when killed."""
    name = Path(path).name
    return name.startswith(".") and name.endswith(STAGING_SUFFIX)


def check_output_path(target: str | Path, directory: bool = False,
                      same_kind: Callable[[Path], bool] | None = None) -> Path:
    """Refuse an output path that holds something of another kind; return it as a Path."""
    target = Path(target)
    what = "folder" if directory else "file"
    if target.is_symlink() and not target.exists():
        raise TreefuseError(f"output {target} is a broken symbolic link; remove it or choose another path")
    if directory and target.exists() and not target.is_dir():
        raise TreefuseError(f"output {target} is a file, but a {what} goes there; remove it or choose another path")
    if not directory and target.is_dir():
        raise TreefuseError(f"output {target} is a folder, but a {what} goes there; "
                            "nothing was touched: choose a file path")
    # A non-empty folder is replaced only when `same_kind` recognises it as the artifact being written.
    if directory and target.is_dir() and any(target.iterdir()) and (same_kind is None or not same_kind(target)):
        raise TreefuseError(f"output {target} is a folder holding something else; nothing was touched: "
                            "choose a new or empty folder")
    for parent in target.parents:
        if parent.exists():
            if not parent.is_dir():
                raise TreefuseError(f"output {target}: {parent} is a file, not a folder; choose another path")
            break
    return target


def check_output_folder(folder: str | Path) -> Path:
    """A folder outputs are written into, one file at a time (not replaced whole): refuse a file there."""
    return check_output_path(folder, directory=True, same_kind=lambda _: True)  # its other files stay untouched


@contextlib.contextmanager
def atomic_path(target: str | Path, directory: bool = False,
                same_kind: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """Yield a staging path beside `target`; move it into place only if the block succeeds.

    `same_kind(existing_folder)` says whether a non-empty folder already at `target` is an artifact of the
    kind being written (and so may be replaced). The block may write companions beside the staged path,
    named after the target (a sidecar `m.pte.json`, a recipe folder `m.rknn.sim/`, `m.int8.sensitivity.json`).
    Companions move first, then the artifact, then its sidecar (`<name>.json`, which binds to the artifact's
    bytes), each by one rename. A companion folder is marked
    as one (COMPANION_MARK); a folder already standing where it goes is replaced only when it is marked, or
    holds nothing the new one does not: an older companion, never a user's folder of other files."""
    target = check_output_path(target, directory, same_kind)
    _make_parents(target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=STAGING_SUFFIX, dir=target.parent))
    staged = tmp / target.name
    try:
        if directory:
            staged.mkdir()
        yield staged
        companions = sorted(path for path in tmp.iterdir() if path != staged and not is_staging_debris(path))
        stray = [path.name for path in companions if not path.name.startswith(target.stem)]
        if stray:
            raise RuntimeError(f"companions of {target.name} must be named after it: {stray}")  # a bug, not input
        sidecar = tmp / f"{target.name}.json"
        moves = [(path, target.parent / path.name, path.is_dir()) for path in companions if path != sidecar]
        moves.append((staged, target, directory))
        if sidecar in companions:
            moves.append((sidecar, target.parent / sidecar.name, False))
        for source, place, is_folder in moves:
            if is_folder and source != staged:
                (source / COMPANION_MARK).write_text(f"written beside {target.name} by treefuse\n")
        for source, place, is_folder in moves:  # every place checked again: it may have changed while we worked
            check_output_path(place, is_folder, same_kind if source == staged else _older_companion(source))
        for source, place, is_folder in moves:
            _move_into_place(source, place, is_folder)
    except OSError as exc:
        if exc.filename is None or str(exc.filename).startswith(str(tmp)):  # name the output, not our staging
            raise OSError(exc.errno, exc.strerror, str(target)) from exc
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _older_companion(new: Path) -> Callable[[Path], bool]:
    """Whether a folder standing where companion `new` goes is an older one: marked, or nothing in it that
    `new` lacks."""
    names = {path.relative_to(new) for path in new.rglob("*")} if new.is_dir() else set()
    return lambda folder: (folder / COMPANION_MARK).is_file() or \
        {path.relative_to(folder) for path in folder.rglob("*")} <= names


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Write JSON to `path` atomically (sorted keys, indented, trailing newline).

    JSON has no infinity: an infinite float (the PSNR of identical images) is written as the
    string "inf" (float("inf") reads it back); a NaN is a bug and is refused.
    """
    text = json.dumps(infinities_as_text(data), indent=2, sort_keys=True, allow_nan=False) + "\n"
    with atomic_path(path) as staged:
        staged.write_text(text)


def _make_parents(target: Path) -> None:
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise TreefuseError(f"output {target}: a file stands where its folder should be; choose another path") from None


def _move_into_place(staged: Path, target: Path, directory: bool) -> None:
    """The one instant an output changes: a rename (a file), or an exchange (a folder replacing a folder)."""
    if directory and target.is_dir():
        _swap_folders(staged, target)
    else:
        os.replace(staged, target)


def _swap_folders(staged: Path, target: Path) -> None:
    """Put `staged` at `target`, the old folder ending up at `staged` (deleted with the staging area)."""
    if _exchange(staged, target):
        return
    # No atomic exchange on this filesystem: two renames; a kill between them leaves the old
    # folder whole inside the hidden staging area and the new one whole beside it.
    old = staged.with_name(staged.name + ".old")
    os.replace(target, old)
    os.replace(staged, target)


def _exchange(first: Path, second: Path) -> bool:
    """Atomically swap two paths with renameat2(RENAME_EXCHANGE); False where unsupported."""
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(second))
