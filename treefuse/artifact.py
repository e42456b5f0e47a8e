"""One metadata record for every artifact, whatever its format.

Exporters write it with `artifact_metadata` (flat string keys, so it fits ONNX
metadata_props, Core ML user metadata and JSON sidecars alike); runners read it back with
`ArtifactRecord.from_metadata`. Tiling, parity, sweep and report read only this record.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from treefuse.errors import TreefuseError
from treefuse.provenance import tool_versions

PREFIX = "treefuse."
# Keys written by treefuse 0.1 exports, read so that older artifacts still load.
LEGACY_KEYS = {"config": ("treefuse_config", "treefuse.config"),
               "source_sha256": ("source_sha256", "treefuse.source_sha256"),
               "calibration_sha256": ("calib_sha256", "treefuse.calibration_sha256"),
               "precision": ("precision", "treefuse.precision")}


@dataclass(frozen=True)
class ArtifactRecord:
    """What an artifact is and where it came from: the same fields for every backend."""

    format: str
    precision: str
    sha256: str
    config: dict[str, Any] | None = None
    source_sha256: str | None = None
    calibration_sha256: str | None = None
    tool_versions: dict[str, str] = field(default_factory=dict)
    path: str = ""
    target: str | None = None  # the runtime a model was made for, where a format serves several

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ArtifactRecord":
        known = {name: data.get(name) for name in cls.__dataclass_fields__ if name in data}
        return cls(**known)

    @classmethod
    def from_metadata(cls, metadata: dict[str, str], *, format: str, path: str | Path, sha256: str,
                      default_precision: str = "fp32") -> "ArtifactRecord":
        """Read the record from flat metadata (current keys first, 0.1 keys as fallback)."""
        provenance = _json_or_empty(metadata.get("treefuse_provenance") or metadata.get("treefuse.provenance"))
        config = _lookup(metadata, "config")
        return cls(format=format,
                   precision=_lookup(metadata, "precision") or provenance.get("precision") or default_precision,
                   sha256=sha256,
                   config=_json_or_empty(config) or provenance.get("config") or None,
                   source_sha256=_lookup(metadata, "source_sha256") or provenance.get("source_sha256"),
                   calibration_sha256=_lookup(metadata, "calibration_sha256") or provenance.get("calibration_sha256"),
                   tool_versions=_json_or_empty(metadata.get(PREFIX + "tool_versions"))
                   or provenance.get("tool_versions") or {},
                   path=str(path), target=metadata.get(PREFIX + "target"))


def artifact_metadata(*, format: str, precision: str, config: dict[str, Any] | None, source_sha256: str | None,
                      calibration_sha256: str | None = None, target: str | None = None) -> dict[str, str]:
    """The flat `treefuse.*` string entries every exporter embeds (or writes to a sidecar)."""
    entries = {"format": format, "precision": precision, "config": json.dumps(config, sort_keys=True),
               "source_sha256": source_sha256, "calibration_sha256": calibration_sha256,
               "tool_versions": json.dumps(tool_versions(), sort_keys=True), "target": target}
    return {PREFIX + key: value for key, value in entries.items() if value}  # absent, not empty, when unknown


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file (its weights are not loaded)."""
    import onnx

    return onnx_model_metadata(onnx.load(str(path), load_external_data=False), path)


def onnx_model_metadata(model: Any, path: str | Path = "the ONNX model") -> dict[str, str]:
    """metadata_props of a loaded ONNX ModelProto; a key or value that is not UTF-8 text is a damaged file."""
    entries = {}
    for prop in model.metadata_props:
        key, value = prop.key, prop.value
        if not isinstance(key, str) or not isinstance(value, str):  # protobuf hands back bytes it cannot decode
            raise TreefuseError(f"{path}: metadata entry {key!r} is not valid UTF-8 text, so the file is damaged; "
                                "re-export it")
        entries[key] = value
    return entries


def _lookup(metadata: dict[str, str], name: str) -> str | None:
    for key in (PREFIX + name, *LEGACY_KEYS.get(name, ())):
        if metadata.get(key):
            return metadata[key]
    return None


def _json_or_empty(text: str | None) -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}
