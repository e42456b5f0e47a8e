"""Result files -> report.md and one self-contained report.html (plots embedded as base64 PNG)."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from treefuse.files import atomic_path
from treefuse.report.grid import DeviceGrid, build_grids
from treefuse.report.manifest import build_manifest, embed_html, embed_markdown
from treefuse.report.plots import Plot, device_plots
from treefuse.report.results import ResultFile, load_result
from treefuse.report.tables import Table, device_tables, markdown_table, sources_table
from treefuse.report.verdict import verdict_table

NOTES = ("Latencies are medians of interleaved runs (backends take turns), so ratios within one device are fair; "
         "absolute times on a shared or busy machine are noisy: compare ratios, not times across runs. "
         "'—' marks a combination nobody measured. Peak memory marked 'own process' comes from a fresh process that "
         "loaded that backend alone (`treefuse benchmark`): what a program running only that engine needs. Other peak "
         "memory figures are the whole process's resident set during one call with every backend it ran loaded "
         "(per-call high-water mark, libraries included); the growth in brackets is a lower bound, since backends in "
         "one process reuse memory others freed.")

CSS = """body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1500px}
table{border-collapse:collapse;margin:8px 0 20px}th,td{border:1px solid #ccc;padding:3px 8px;font-size:13px}
th{background:#f3f3f3}td:not(:first-child){text-align:right;font-variant-numeric:tabular-nums}
img{max-width:100%;border:1px solid #ddd}code{font-size:12px}h2{border-bottom:2px solid #ddd}
h1{font-size:22px;margin:0 0 8px}h3{font-size:15px;margin:14px 0 4px}table.verdict th{background:#e8f0fe}
table.verdict td:nth-child(2){text-align:left;max-width:560px}p.ship{font-size:15px;margin:4px 0 16px}
.plots{display:flex;flex-wrap:wrap;gap:8px}img.plot{width:480px}p.note{color:#555;font-size:13px}"""


def write_report(result_paths: list[Path], out_dir: Path, notes: tuple[str, ...] = (),
                 prefer: str | None = None, size: tuple[int, int] | None = None) -> tuple[Path, Path]:
    """Merge result files into out_dir/report.md and out_dir/report.html (both written atomically).

    Each opens on one verdict table per device; `size` is the resolution its latency is read at
    (default 512x512 when measured, else the largest); `notes` are the author's words about the runs.
    """
    results = [load_result(path) for path in result_paths]
    grids = build_grids(results, prefer)
    manifest = build_manifest(results, out_dir)
    plots = {grid.device: device_plots(grid, size) for grid in grids}
    md_path, html_path = out_dir / "report.md", out_dir / "report.html"
    with atomic_path(md_path) as staged:
        staged.write_text(render_markdown(grids, results, manifest, notes, size, plots))
    with atomic_path(html_path) as staged:
        staged.write_text(render_html(grids, results, manifest, plots, notes, size))
    return md_path, html_path


def _fingerprint_line(result: ResultFile) -> str:
    device: dict[str, Any] = result.data["device"]
    versions = device.get("versions", {})
    flags = ", ".join(device.get("cpu", {}).get("isa_flags", []))
    tools = ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    return (f"{result.path.name}: {result.data['kind']} on {result.device} [{flags}], threads {device.get('threads_used')}, "
            f"{result.data.get('provenance', {}).get('created_utc', 'time unknown')}; {tools}")


def device_lines(results: list[ResultFile]) -> list[str]:
    """One short provenance line per device: its flags, how many result files, threads, and when."""
    lines = []
    for device in dict.fromkeys(r.device for r in results):
        mine = [r for r in results if r.device == device]
        flags = sorted({f for r in mine for f in r.data["device"].get("cpu", {}).get("isa_flags", [])})
        threads = sorted({str(r.data["device"].get("threads_used")) for r in mine})
        days = sorted({str(r.data.get("provenance", {}).get("created_utc", ""))[:10] for r in mine} - {""})
        when = (days[0] if len(days) == 1 else f"{days[0]} to {days[-1]}") if days else "time unknown"
        lines.append(f"{device} [{', '.join(flags) or 'no flags recorded'}]: {len(mine)} result file"
                     f"{'s' if len(mine) > 1 else ''}, threads {'/'.join(threads)}, {when}")
    return lines


def render_markdown(grids: list[DeviceGrid], results: list[ResultFile], manifest: dict[str, Any],
                    notes: tuple[str, ...] = (), size: tuple[int, int] | None = None,
                    plots: dict[str, tuple[list[Plot], list[str]]] | None = None) -> str:
    lines = ["# treefuse per-device report", "", "## Which engine to ship", ""]
    for grid in grids:
        table, ship, column_notes = verdict_table(grid, size)
        lines += [markdown_table(table), "", f"Ship: {ship}.", "", *[f"{n}\n" for n in column_notes]]
    lines += [f"> {note}\n" for note in notes]
    for grid in grids:
        lines += ["", f"## {grid.device}", ""]
        lines += [f"{note}\n" for note in (plots or {}).get(grid.device, ([], []))[1]]
        for table in device_tables(grid):
            lines += [markdown_table(table), ""]
    lines += ["## How these were measured", "", NOTES, "", "## Provenance", "",
              *[f"- {line}" for line in device_lines(results)], "",
              "<details><summary>Every result file with its machine and tool versions, and the hashes "
              "<code>treefuse report --verify report.md</code> re-checks</summary>", "",
              *[f"- {_fingerprint_line(r)}" for r in results], "", markdown_table(sources_table(manifest)), "",
              "</details>", "", embed_markdown(manifest)]
    return "\n".join(lines)


def _html_table(table: Table, css_class: str = "") -> str:
    title, header, rows = table
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    attribute = f" class='{css_class}'" if css_class else ""
    return f"<h3>{html.escape(title)}</h3><table{attribute}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bold(text: str) -> str:
    """The recommendation's **names** as <b>, the rest escaped."""
    parts = html.escape(text).split("**")
    return "".join(f"<b>{p}</b>" if i % 2 else p for i, p in enumerate(parts))


def render_html(grids: list[DeviceGrid], results: list[ResultFile], manifest: dict[str, Any],
                plots: dict[str, tuple[list[Plot], list[str]]], notes: tuple[str, ...] = (),
                size: tuple[int, int] | None = None) -> str:
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>treefuse per-device report</title>",
             f"<style>{CSS}</style></head><body><h1>treefuse per-device report: which engine to ship</h1>"]
    for grid in grids:
        table, ship, column_notes = verdict_table(grid, size)
        parts += [_html_table(table, "verdict"), f"<p class='ship'>Ship: {_bold(ship)}.</p>",
                  *[f"<p class='note'>{html.escape(n)}</p>" for n in column_notes]]
    parts += [f"<blockquote>{html.escape(note)}</blockquote>" for note in notes]
    for grid in grids:
        device_plots_, plot_notes = plots[grid.device]
        parts += [f"<h2>{html.escape(grid.device)}</h2><div class='plots'>"]
        for plot in device_plots_:
            png = base64.b64encode(plot.png).decode("ascii")
            parts.append(f"<img class='plot' data-points='{plot.points}' alt='{html.escape(plot.title)} on "
                         f"{html.escape(grid.device)}' src='data:image/png;base64,{png}'>")
        parts += ["</div>", *[f"<p class='note'>{html.escape(n)}</p>" for n in plot_notes],
                  *[_html_table(t) for t in device_tables(grid)]]
    parts += [f"<h2>How these were measured</h2><p>{html.escape(NOTES)}</p><h2>Provenance</h2><ul>",
              *[f"<li>{html.escape(line)}</li>" for line in device_lines(results)], "</ul>",
              "<details><summary>Every result file with its machine and tool versions, and the hashes "
              "<code>treefuse report --verify report.html</code> re-checks</summary><ul>",
              *[f"<li><code>{html.escape(_fingerprint_line(r))}</code></li>" for r in results], "</ul>",
              _html_table(sources_table(manifest)), "</details>", embed_html(manifest), "</body></html>\n"]
    return "\n".join(parts)
