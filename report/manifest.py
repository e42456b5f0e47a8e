"""The hash chain a report stands on (weights -> artifact -> result -> report), embedded in the report itself."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from treefuse.errors import TreefuseError
from treefuse.provenance import utc_now
from treefuse.report.results import ResultFile

REPORT_FORMAT = "treefuse-report-v1"
_MD_PATTERN = re.compile(r"<!-- treefuse-manifest\n(.*?)\n-->", re.S)
_HTML_PATTERN = re.compile(r'<script type="application/json" id="treefuse-manifest">(.*?)</script>', re.S)


def artifact_records(result: ResultFile) -> list[dict[str, Any]]:
    """The artifacts a result names, once each (one ONNX file may run on two backends), as {path, sha256, kind, ...}."""
    records: dict[tuple[str, str], dict[str, Any]] = {}
    for facts in result.artifacts:
        record = {"path": facts["path"], "sha256": facts["sha256"], "kind": facts["kind"]}
        source = (facts.get("artifact") or {}).get("source_sha256") or facts.get("source_sha256")
        if source:
            record["source_sha256"] = source
        records.setdefault((record["path"], record["sha256"]), record)
    return list(records.values())


def build_manifest(results: list[ResultFile], out_dir: Path) -> dict[str, Any]:
    """Results (paths relative to the report folder) and artifacts (paths as the results recorded them)."""
    artifacts: dict[tuple[str, str], dict[str, Any]] = {}
    for result in results:
        for record in artifact_records(result):
            artifacts.setdefault((record["path"], record["sha256"]), record)
    return {"format": REPORT_FORMAT, "created_utc": utc_now(),
            "results": [{"path": os.path.relpath(r.path.resolve(), out_dir.resolve()), "sha256": r.sha256,
                         "kind": r.data["kind"], "device": r.device} for r in results],
            "artifacts": list(artifacts.values())}


def embed_markdown(manifest: dict[str, Any]) -> str:
    return "<!-- treefuse-manifest\n" + json.dumps(manifest, indent=1, sort_keys=True).replace("--", "-\\u002d") + "\n-->\n"


def embed_html(manifest: dict[str, Any]) -> str:
    text = json.dumps(manifest, sort_keys=True).replace("</", "<\\/")
    return f'<script type="application/json" id="treefuse-manifest">{text}</script>'


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest embedded in a report.md or report.html."""
    text = path.read_text(errors="replace")
    match = (_HTML_PATTERN if path.suffix.lower() in (".html", ".htm") else _MD_PATTERN).search(text)
    if not match:
        raise TreefuseError(f"{path} holds no treefuse manifest; pass a report.md/report.html made by `treefuse report`")
    try:
        manifest = json.loads(match.group(1).replace("<\\/", "</"))
    except json.JSONDecodeError:
        raise TreefuseError(f"{path}: its treefuse manifest is damaged; rebuild the report with `treefuse report`") from None
    if manifest.get("format") != REPORT_FORMAT:
        raise TreefuseError(f"{path}: report format {manifest.get('format')!r} is not {REPORT_FORMAT}; rebuild it")
    return manifest
