"""What every artifact records about where it came from."""
from __future__ import annotations

import datetime as _dt
import functools
import platform
import re
from importlib.metadata import PackageNotFoundError, requires, version
from typing import Any

CORE_PACKAGES = ("treefuse", "torch", "onnx", "onnxruntime", "onnxsim", "numpy")  # every export goes through these


@functools.lru_cache(maxsize=1)  # every artifact and result asks; the installed metadata does not change in a run
def format_packages() -> tuple[str, ...]:
    """The pip packages of every format's extra (the format table's `extra`, as pyproject lists them)."""
    from treefuse.formats import FORMATS

    extras = {fmt.extra for fmt in FORMATS if fmt.extra}
    try:
        requirements = requires("treefuse") or []
    except PackageNotFoundError:  # run from a source tree that was never installed
        return ()
    names = []
    for requirement in requirements:
        name, _, marker = requirement.partition(";")
        extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)['\"]", marker)
        if extra and extra.group(1) in extras:
            names.append(re.split(r"[<>=!~\[ ]", name.strip(), maxsplit=1)[0])
    return tuple(dict.fromkeys(names))


def tool_versions(packages: tuple[str, ...] | None = None) -> dict[str, str]:
    """Installed versions of the packages that shape an artifact (absent ones omitted): the core and every format's."""
    versions = {"python": platform.python_version()}
    for name in packages or (*CORE_PACKAGES, *format_packages()):
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
