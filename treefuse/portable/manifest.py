"""A bundle's manifest: every file's sha256, checked before anything in the bundle is read or run.

Paths are bundle-relative POSIX paths; one that is absolute, climbs out with '..', or
resolves (through a link) outside the bundle is refused, so a crafted manifest cannot make
a device hash or load files elsewhere.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

MANIFEST = "manifest.json"
FORMAT = "treefuse-bundle-v1"


class BundleError(Exception):
    """The bundle is bad or tampered with: one line for the user, exit 2."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def inside(root: Path, relative: str) -> Path:
    """`relative` under `root`; refuses a path that is absolute, has '..', or resolves outside `root`."""
    if not isinstance(relative, str) or not relative or "\\" in relative or "\x00" in relative:
        raise BundleError(f"manifest path {relative!r} is not a bundle-relative path; re-pack the bundle")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or relative.startswith("~"):
        raise BundleError(f"manifest path {relative!r} leaves the bundle; refusing it: re-pack the bundle")
    path = root / pure
    root_resolved = root.resolve()
    if path.resolve() != root_resolved and root_resolved not in path.resolve().parents:
        raise BundleError(f"manifest path {relative!r} resolves outside the bundle (a link?); re-pack the bundle")
    return path


def write_manifest(root: Path, files: list[str], record: dict[str, Any]) -> dict[str, Any]:
    """Hash `files` (bundle-relative) and write manifest.json; returns the manifest."""
    manifest = {"format": FORMAT, **record,
                "files": {name: sha256_file(inside(root, name)) for name in sorted(files)}}
    (root / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def read_manifest(root: Path) -> dict[str, Any]:
    """The parsed manifest (format and shape checked; hashes not yet)."""
    path = root / MANIFEST
    if not path.is_file():
        raise BundleError(f"{root} holds no {MANIFEST}: not a treefuse bundle; make one with `treefuse pack`")
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BundleError(f"{path} is damaged (not valid JSON); copy the bundle again or re-pack it") from None
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or not isinstance(files, dict) \
            or not all(isinstance(v, str) for v in files.values()):
        raise BundleError(f"{path} is not a {FORMAT} manifest; copy the bundle again or re-pack it")
    return manifest


def verify_bundle(root: Path) -> dict[str, Any]:
    """Re-hash every file the manifest names; refuse a missing, changed or escaping one. Returns the manifest."""
    manifest = read_manifest(root)
    for name, expected in manifest["files"].items():
        path = inside(root, name)
        if not path.is_file():
            raise BundleError(f"bundle file {name} is missing; copy the whole bundle folder again")
        if sha256_file(path) != expected:
            raise BundleError(f"bundle file {name} does not match its sha256 in {MANIFEST} (changed or damaged); "
                              "copy the bundle again or re-pack it")
    return manifest


def manifest_sha256(root: Path) -> str:
    """The manifest's own hash: one value that names every byte of the bundle."""
    return sha256_file(root / MANIFEST)
