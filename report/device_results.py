"""`treefuse report --verify` for a result that came back from a device: re-check it against its bundle.

A device result names its bundle (folder name and the manifest's sha256) and its artifact's
sha256; the bundle here must be the same bytes, and its artifact the one the result ran.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from treefuse.portable.manifest import BundleError, manifest_sha256, verify_bundle
from treefuse.report.verify import Check, locate


def find_bundle(name: str, manifest_sha: str, candidates: list[Path], anchor: Path) -> Path | None:
    """The bundle folder: a --bundle folder whose manifest matches, else one named `name` near the result."""
    for folder in candidates:
        if (folder / "manifest.json").is_file() and manifest_sha256(folder) == manifest_sha:
            return folder
    named = [folder for folder in candidates if folder.resolve().name == name]
    return named[0] if named else locate(name, anchor)


def bundle_checks(result_path: Path, data: dict[str, Any], bundles: list[Path]) -> list[Check]:
    """Manifest hash, every bundle file's hash, and the artifact the result ran, against the bundle here."""
    recorded = data["provenance"]["bundle"]
    folder = find_bundle(str(recorded.get("name", "")), str(recorded.get("manifest_sha256", "")), bundles, result_path)
    if folder is None:
        return [Check("missing", "bundle", str(recorded.get("name")),
                      "not found: pass --bundle BUNDLE_DIR (the folder `treefuse pack` wrote)")]
    checks = []
    actual = manifest_sha256(folder)
    status = "ok" if actual == recorded.get("manifest_sha256") else "changed"
    checks.append(Check(status, "bundle", str(folder), f"manifest sha256 {actual[:16]}"
                        + ("" if status == "ok" else f" != recorded {str(recorded.get('manifest_sha256'))[:16]}")))
    try:
        manifest = verify_bundle(folder)
        checks.append(Check("ok", "bundle", str(folder), f"{len(manifest['files'])} files match the manifest"))
    except BundleError as exc:
        return checks + [Check("changed", "bundle", str(folder), str(exc))]
    for facts in _ran(data):
        artifact = facts.get("artifact") or {}
        in_bundle = manifest["files"].get(str(artifact.get("path", "")))
        status = "ok" if in_bundle and in_bundle == facts.get("sha256") == artifact.get("sha256") else "changed"
        checks.append(Check(status, "artifact", facts.get("path", "?"),
                            f"sha256 {str(facts.get('sha256'))[:16]} vs bundle {str(in_bundle)[:16]}"))
        if facts.get("simulated"):  # verified bytes, but not the device's own run: say what ran them
            checks.append(Check("note", "simulated", facts.get("path", "?"),
                                f"ran on {facts.get('backend')}: its latency is not the device's"))
    return checks


def _ran(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [data["candidate"]] if "candidate" in data else list(data.get("backends", []))
