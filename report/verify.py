"""`treefuse report --verify`: re-hash every result and artifact a report or result file names."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from treefuse.files import sha256_file
from treefuse.report.manifest import artifact_records, read_manifest
from treefuse.report.results import load_result


@dataclass(frozen=True)
class Check:
    """One check: status 'ok', 'changed' or 'missing' (failures), or 'note' (worth knowing, not a failure)."""

    status: str
    what: str
    path: str
    detail: str = ""

    @property
    def failed(self) -> bool:
        return self.status in ("changed", "missing")


def locate(path: str, anchor: Path, bases: tuple[Path, ...] = ()) -> Path | None:
    """A recorded path as it exists now: absolute, else relative to the current folder, `anchor`'s folders or `bases`."""
    candidate = Path(path)
    if candidate.is_absolute():
        return candidate if candidate.exists() else None
    for base in [Path.cwd(), *anchor.resolve().parents, *bases]:
        if (base / candidate).exists():
            return base / candidate
    return None


def check_file(what: str, recorded: str, expected_sha256: str, anchor: Path, bases: tuple[Path, ...] = ()) -> Check:
    found = locate(recorded, anchor, bases)
    if found is None:
        return Check("missing", what, recorded, "not found (run --verify from the folder the results were made in)")
    actual = sha256_file(found)
    if actual != expected_sha256:
        return Check("changed", what, recorded, f"sha256 {actual[:16]} != recorded {expected_sha256[:16]}")
    return Check("ok", what, recorded, expected_sha256[:16])


def chain_checks(artifacts: list[dict[str, Any]]) -> list[Check]:
    """Link each exported artifact to its source weights: named alongside it, or the shipped weights.

    An artifact whose weights are neither is noted, not failed: nothing named is gone or changed.
    """
    weights = {a["sha256"] for a in artifacts if a["kind"] == "torch"}
    checks = []
    for artifact in artifacts:
        source = artifact.get("source_sha256")
        if not source or artifact["kind"] == "torch":
            continue
        if source in weights:
            checks.append(Check("ok", "chain", artifact["path"], f"made from weights {source[:16]}"))
        elif source == _shipped_weights_sha256():
            checks.append(Check("ok", "chain", artifact["path"], f"made from the shipped weights {source[:16]}"))
        else:
            checks.append(Check("note", "chain", artifact["path"],
                                f"made from weights {source[:16]}, which this report does not name"))
    return checks


def _shipped_weights_sha256() -> str | None:
    from treefuse.checkpoint import DEFAULT_WEIGHTS

    return sha256_file(DEFAULT_WEIGHTS) if DEFAULT_WEIGHTS.is_file() else None


def verify_result(path: Path, bundles: tuple[Path, ...] = ()) -> list[Check]:
    """Re-hash the artifacts one result file names (a foreign file is refused by load_result)."""
    result = load_result(path)
    if (result.data.get("provenance") or {}).get("bundle"):  # it came back from a device: check its bundle
        from treefuse.report.device_results import bundle_checks

        return bundle_checks(path, result.data, list(bundles))
    records = artifact_records(result)
    return [check_file("artifact", r["path"], r["sha256"], path) for r in records] + chain_checks(records)


def verify_report(path: Path, bundles: tuple[Path, ...] = ()) -> list[Check]:
    """Re-hash the results a report names, their artifacts, and the artifacts the report itself recorded."""
    manifest = read_manifest(path)
    checks = []
    for entry in manifest["results"]:
        check = check_file("result", str((path.parent / entry["path"])), entry["sha256"], path)
        checks.append(Check(check.status, "result", entry["path"], check.detail))
    # A device result names its artifact inside its bundle ('BUNDLE/artifact/m.onnx'): look beside the bundles given.
    bases = tuple(bundle.resolve().parent for bundle in bundles)
    checks += [check_file("artifact", a["path"], a["sha256"], path, bases) for a in manifest["artifacts"]]
    return checks + chain_checks(manifest["artifacts"])


def verify(paths: list[Path], bundles: tuple[Path, ...] = ()) -> list[Check]:
    """All checks for a mix of result files (.json) and reports (.md, .html); `bundles`: device bundles here."""
    checks: list[Check] = []
    for path in paths:
        if path.suffix.lower() in (".md", ".html", ".htm"):
            checks += verify_report(path, bundles)
        else:
            checks += verify_result(path, bundles)
    return checks
