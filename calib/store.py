"""A calibration set on disk: `images.npy` (N x 3 x H x W float32 in [0, 1]) and `manifest.json`.

The set's own hash covers the tensor bytes and the deterministic part of the manifest
(sources, crops, preprocessing, seed), not timestamps or tool versions, so the same
inputs give the same hash. Tensors load with `allow_pickle=False`: never a pickle.
"""
from __future__ import annotations

import hashlib
import json
import tokenize
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.errors import GateFailed, TreefuseError, one_line
from treefuse.files import sha256_file

FORMAT = "treefuse-calib-v1"
MANIFEST = "manifest.json"
TENSOR_FILE = "images.npy"
# What numpy raises on a damaged .npy: its header is a Python literal, parsed by ast and tokenize.
UNREADABLE_NPY = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError)
# Manifest keys that describe the run rather than the data: left out of the set's hash.
UNHASHED_KEYS = ("sha256", "provenance")
# What every manifest holds (and `calib info` prints), with the JSON type it must have.
REQUIRED_KEYS = {"tensor": dict, "sha256": str, "sources": list, "seed": int}


@dataclass(frozen=True)
class CalibrationSet:
    """A verified calibration set: the images, its hash and what its manifest says."""

    images: np.ndarray
    sha256: str
    manifest: dict[str, Any]
    path: Path

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def image_names(self) -> list[str]:
        """Each crop named by the file it was cut from, as messages name images."""
        return [f"{source.get('file', '?')}, calibration crop" for source in self.manifest.get("sources", [])]

    def batches(self, batch_size: int = 1) -> list[np.ndarray]:
        """The images as contiguous float32 batches of at most `batch_size`."""
        return [np.ascontiguousarray(self.images[i:i + batch_size]) for i in range(0, len(self), batch_size)]


def set_sha256(manifest: dict[str, Any], tensor_sha256: str) -> str:
    """The set's own hash: tensor bytes plus the manifest's deterministic fields."""
    content = {key: value for key, value in manifest.items() if key not in UNHASHED_KEYS}
    digest = hashlib.sha256()
    digest.update(tensor_sha256.encode())
    digest.update(json.dumps(content, sort_keys=True, separators=(",", ":")).encode())
    return digest.hexdigest()


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a calibration set folder, refusing anything that is not one."""
    path = Path(path)
    manifest_path = path / MANIFEST
    if not path.is_dir() or not manifest_path.is_file():
        raise TreefuseError(f"{path} is not a calibration set (no {MANIFEST}); build one with `treefuse calib build`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TreefuseError(f"{manifest_path} is not valid JSON: not a calibration set; rebuild it") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise TreefuseError(f"{path} is not a calibration set ({MANIFEST} lacks format {FORMAT!r})")
    missing = [key for key, kind in REQUIRED_KEYS.items() if not isinstance(manifest.get(key), kind)]
    if missing or not all(key in manifest["tensor"] for key in ("file", "sha256", "shape")):
        raise TreefuseError(f"{manifest_path} lacks {', '.join(missing) or 'tensor file/sha256/shape'}: "
                            "not a whole calibration set; rebuild it with `treefuse calib build`")
    tensor_file(path, manifest)
    return manifest


def tensor_file(path: Path, manifest: dict[str, Any]) -> Path:
    """The set's tensor file; a name leaving the set's folder (../, absolute, a symlink out) is refused."""
    name = manifest["tensor"]["file"]
    inside = isinstance(name, str) and name and not Path(name).is_absolute()
    if not inside or not (path / name).resolve().is_relative_to(path.resolve()):
        raise TreefuseError(f"{path / MANIFEST} names the tensor file {name!r}, outside the set's folder; "
                            "a calibration set reads only its own files: rebuild it with `treefuse calib build`")
    return path / name


def _load_checked(path: Path) -> tuple[dict[str, Any], np.ndarray | None, list[str]]:
    """Manifest, images (None if unreadable) and every way the set differs from its manifest."""
    manifest = read_manifest(path)
    tensor = manifest["tensor"]
    tensor_path = tensor_file(path, manifest)
    if not tensor_path.is_file():
        return manifest, None, [f"tensor file {tensor_path.name} is missing"]
    problems = []
    tensor_sha = sha256_file(tensor_path)
    if tensor_sha != tensor.get("sha256"):
        problems.append(f"{tensor_path.name} sha256 {tensor_sha[:12]} != manifest {str(tensor.get('sha256'))[:12]}")
    if set_sha256(manifest, tensor_sha) != manifest.get("sha256"):
        problems.append("the set hash does not match its manifest and tensors")
    try:
        images = np.load(tensor_path, allow_pickle=False)
    except UNREADABLE_NPY as exc:
        return manifest, None, problems + [f"{tensor_path.name} is not a readable .npy ({one_line(exc)})"]
    problems += _shape_problems(images, tensor)
    return manifest, images, problems


def _shape_problems(images: np.ndarray, tensor: dict[str, Any]) -> list[str]:
    if images.dtype != np.float32 or images.ndim != 4 or images.shape[1] != 3:
        return [f"images must be N x 3 x H x W float32, got {images.shape} {images.dtype}"]
    problems = []
    if list(images.shape) != tensor.get("shape"):
        problems.append(f"images shape {list(images.shape)} != manifest {tensor.get('shape')}")
    if images.size and not (np.isfinite(images).all() and images.min() >= 0.0 and images.max() <= 1.0):
        problems.append("images hold values outside [0, 1] or NaN")
    return problems


def _npy_header_readable(tensor_path: Path) -> bool:
    """True when the .npy's header parses (its content may still be refused, as a pickled array is); a missing file too."""
    if not tensor_path.is_file():
        return True  # a missing tensor is a changed set, said as such
    try:
        with open(tensor_path, "rb") as stream:
            major, _ = np.lib.format.read_magic(stream)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            read_header(stream)  # the parser np.load uses, without the data
    except UNREADABLE_NPY:
        return False
    return True


def verify_calibration_set(path: str | Path) -> dict[str, Any]:
    """Check a set against its manifest; GateFailed if changed, TreefuseError if not a set or unreadable."""
    path = Path(path)
    manifest, images, problems = _load_checked(path)
    if images is None and not _npy_header_readable(tensor_file(path, manifest)):  # damaged, not changed: bad input
        raise TreefuseError(f"calibration set {path} is corrupt ({problems[-1]}); rebuild it with `treefuse calib build`")
    if problems:
        raise GateFailed(f"calibration set {path} was changed: {'; '.join(problems)}")
    return manifest


def load_calibration_set(path: str | Path) -> CalibrationSet:
    """Load and verify a calibration set; a changed or corrupt set is a TreefuseError."""
    path = Path(path)
    manifest, images, problems = _load_checked(path)
    if problems or images is None:
        raise TreefuseError(
            f"calibration set {path} is corrupt ({'; '.join(problems)}); rebuild it with `treefuse calib build`")
    images.setflags(write=False)
    return CalibrationSet(images=images, sha256=manifest["sha256"], manifest=manifest, path=path)
