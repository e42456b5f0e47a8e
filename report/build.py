"""Result files -> report.md and one self-contained report.html (plots embedded as base64 PNG)."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from treefuse.files import atomic_path
from treefuse.report.grid import DeviceGrid, build_grids
from treefuse.report.manifest import build_manifest, embed_html, embed_markdown
from treefuse.report.plots import device_figure
from treefuse.report.results import ResultFile, load_result
from treefuse.report.tables import Table, device_tables, markdown_table, sources_table

NOTES = ("Latencies are medians of interleaved runs (backends take turns), so ratios within one device are fair; "
         "absolute times on a shared or busy machine are noisy: compare ratios, not times across runs. "
         "'—' marks a combination nobody measured. Peak memory is the whole process's resident set during one call "
         "(per-call high-water mark, libraries included); the growth in brackets is a lower bound, since backends in one "
         "process reuse memory others freed (sweep one backend per process for exact figures).")

CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}
table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3}td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #ddd}code{font-size:12px}h2{border-bottom:2px solid #ddd}"""


def write_report(result_paths: list[Path], out_dir: Path, notes: tuple[str, ...] = (),
                 prefer: str | None = None) -> tuple[Path, Path]:
    """Merge result files into out_dir/report.md and out_dir/report.html (both written atomically).

    `notes` are the author's words about the runs (a busy machine, a skipped size), printed first.
    """
    results = [load_result(path) for path in result_paths]
    grids = build_grids(results, prefer)
    manifest = build_manifest(results, out_dir)
    figures = {grid.device: device_figure(grid) for grid in grids}
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    with atomic_path(md_path) as staged:
        staged.write_text(render_markdown(grids, results, manifest, notes))
    with atomic_path(html_path) as staged:
        staged.write_text(render_html(grids, results, manifest, figures, notes))
    return md_path, html_path


def _fingerprint_line(result: ResultFile) -> str:
    device: dict[str, Any] = result.data["device"]
    versions = device.get("versions", {})
    flags = ", ".join(device.get("cpu", {}).get("isa_flags", []))
    tools = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    return (f"{result.path.name}: {result.data['kind']} on {result.device} [{flags}], threads {device.get('threads_used')}, "
            f"{result.data.get('provenance', {}).get('created_utc', 'time unknown')}; {tools}")


def render_markdown(grids: list[DeviceGrid], results: list[ResultFile], manifest: dict[str, Any],
                    notes: tuple[str, ...] = ()) -> str:
    lines = ["# treefuse per-device report", "", *[f"> {note}\n" for note in notes], NOTES, "", "Measured on:", ""]
    lines += [f"- {_fingerprint_line(r)}" for r in results]
    for grid in grids:
        lines += ["", f"## {grid.device}", ""]
        for table in device_tables(grid):
            lines += [markdown_table(table), ""]
    lines += ["## Sources", "", "Re-check every hash below with `treefuse report --verify report.md`.", "",
              markdown_table(sources_table(manifest)), "", embed_markdown(manifest)]
    return "\n".join(lines)


def _html_table(table: Table) -> str:
    title, header, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<h3>{html.escape(title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_html(grids: list[DeviceGrid], results: list[ResultFile], manifest: dict[str, Any],
                figures: dict[str, bytes], notes: tuple[str, ...] = ()) -> str:
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>treefuse per-device report</title>",
             f"<style>{CSS}</style></head><body><h1>treefuse per-device report</h1>",
             *[f"<blockquote>{html.escape(note)}</blockquote>" for note in notes],
             f"<p>{html.escape(NOTES)}</p><ul>",
             *[f"<li><code>{html.escape(_fingerprint_line(r))}</code></li>" for r in results], "</ul>"]
    for grid in grids:
        png = base64.b64encode(figures[grid.device]).decode("ascii")
        parts += [f"<h2>{html.escape(grid.device)}</h2>",
                  f"<img class='plots' alt='plots for {html.escape(grid.device)}' src='data:image/png;base64,{png}'>",
                  *[_html_table(t) for t in device_tables(grid)]]
    parts += ["<h2>Sources</h2><p>Re-check every hash with <code>treefuse report --verify report.html</code>.</p>",
              _html_table(sources_table(manifest)), embed_html(manifest), "</body></html>\n"]
    return "\n".join(parts)
