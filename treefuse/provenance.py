"""What every artifact records about where it came from."""
from __future__ import annotations

import datetime as _dt
import platform
from importlib.metadata import PackageNotFoundError, version
from typing import Any

TOOL_PACKAGES = ("treefuse", "torch", "onnx", "onnxruntime", "onnxsim", "coremltools", "tensorrt", "numpy")


def tool_versions(packages: tuple[str, ...] = TOOL_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that shape an artifact (absent ones omitted)."""
    versions = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def provenance(**fields: Any) -> dict[str, Any]:
    """A provenance record: the given fields plus tool versions and a timestamp."""
    return {"created_utc": utc_now(), "tool_versions": tool_versions(), **fields}
