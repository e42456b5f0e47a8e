"""Provenance beside an artifact whose format has no metadata field: `m.pte` -> `m.pte.json`.

The sidecar names the artifact's sha256, so a sidecar left beside a different (re-exported
or replaced) file is refused instead of lending it a false history.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from treefuse.errors import TreefuseError
from treefuse.files import sha256_file, write_json_atomic

FORMAT = "treefuse-sidecar-v1"


def sidecar_path(artifact: str | Path) -> Path:
    """Where an artifact's sidecar lives: its name plus '.json'."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def sidecar_document(artifact_name: str, artifact_sha256: str, metadata: dict[str, str],
                     record: dict[str, Any]) -> dict[str, Any]:
    """The sidecar's content: flat `treefuse.*` metadata and the provenance `record`, bound to the artifact's bytes."""
    return {"format": FORMAT, "artifact": artifact_name, "artifact_sha256": artifact_sha256,
            "metadata": metadata, "provenance": record}


def write_sidecar(artifact: str | Path, metadata: dict[str, str], record: dict[str, Any]) -> Path:
    """Write flat `treefuse.*` metadata and the provenance `record` beside `artifact`, bound to its bytes."""
    path = sidecar_path(artifact)
    write_json_atomic(path, sidecar_document(Path(artifact).name, sha256_file(artifact), metadata, record))
    return path


def read_sidecar(artifact: str | Path) -> dict[str, Any] | None:
    """{"metadata": ..., "provenance": ...} of `artifact`, None without a sidecar; refuses one of other bytes."""
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TreefuseError(f"{path} is not valid JSON; delete it or re-export {Path(artifact).name}") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise TreefuseError(f"{path} is not a treefuse sidecar (format {FORMAT!r}); delete it or re-export")
    if content.get("artifact_sha256") != sha256_file(artifact):
        raise TreefuseError(f"{path} describes other bytes than {Path(artifact).name} (sha256 differs): "
                            "the file was replaced; re-export it or delete the stale sidecar")
    return {"metadata": dict(content.get("metadata") or {}), "provenance": dict(content.get("provenance") or {})}
