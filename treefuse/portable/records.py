"""Result records as JSON, with the kinds and schema version `treefuse.results` reads back."""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 2  # 1: treefuse 0.1 files, which carry no version; they still load
PARITY_KIND, BENCH_KIND = "treefuse-parity", "treefuse-bench"


def record(kind: str, device: dict[str, Any], provenance: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A result record: kind, schema version, device, provenance and the kind's own fields."""
    return {"kind": kind, "schema_version": SCHEMA_VERSION, "device": device, "provenance": provenance, **fields}


def infinities_as_text(value: Any) -> Any:
    """JSON has no infinity: +-inf (the PSNR of identical images) becomes the string "inf"/"-inf"."""
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, dict):
        return {key: infinities_as_text(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [infinities_as_text(item) for item in value]
    return value


def write_json(path: Path, data: Any) -> None:
    """Write JSON by one rename from a hidden staging file beside it (a NaN is a bug and is refused)."""
    text = json.dumps(infinities_as_text(data), indent=2, sort_keys=True, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, staged = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(staged, path)
    finally:
        if os.path.exists(staged):
            os.unlink(staged)
