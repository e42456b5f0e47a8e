"""report.html in a real headless Chromium at 1280x800: the verdict table is the first table and in the first screen,
every plot loads and none is drawn from a single point, no console errors, plots visible in a screenshot."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from treefuse.cli import main
from report_fakes import make_sweep

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (run `make browser`)")]
pytest.importorskip("matplotlib", reason="report plots need matplotlib (pip install 'treefuse[report]')")

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ["reports/report.html", "reports/mobile/report.html", "reports/device/report.html"]
SCREEN = (1280, 800)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]

# Run in the page once it has loaded: where the first table sits, and whether each image decoded.
PROBE = """<script>window.addEventListener('load', () => {
  const table = document.querySelector('table');
  const box = table ? table.getBoundingClientRect() : null;
  const firstRow = table ? table.querySelector('tbody tr') : null;
  const found = {viewport: [window.innerWidth, window.innerHeight], first_table_class: table ? table.className : null,
    first_table_top: box ? box.top : null, first_row_bottom: firstRow ? firstRow.getBoundingClientRect().bottom : null,
    images: [...document.images].map(i => ({loaded: i.complete && i.naturalWidth > 0, points: Number(i.dataset.points)}))};
  const out = document.createElement('pre'); out.id = 'treefuse-probe'; out.textContent = JSON.stringify(found);
  document.body.appendChild(out);
});</script>"""


def chromium(tmp_path, *args):
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def probe(html_path: Path, tmp_path: Path) -> dict:
    """What the page shows at 1280x800, read by PROBE from the live DOM."""
    probed = tmp_path / f"probed-{html_path.parent.name}.html"
    probed.write_text(html_path.read_text().replace("</body>", PROBE + "</body>"))
    run = chromium(tmp_path, f"--window-size={SCREEN[0]},{SCREEN[1]}", "--virtual-time-budget=5000", "--dump-dom",
                   probed.as_uri())
    match = re.search(r'<pre id="treefuse-probe">(.*?)</pre>', run.stdout, re.S)
    assert match, run.stderr[-2000:]
    return json.loads(match.group(1).replace("&amp;", "&").replace("&quot;", '"'))


def answers_first(found: dict) -> list[str]:
    """What is wrong with a page that should open on its verdict (empty: nothing)."""
    problems = []
    if found["viewport"][0] != SCREEN[0]:
        problems.append(f"viewport {found['viewport']}")
    if found["first_table_class"] != "verdict":
        problems.append(f"first table is {found['first_table_class']!r}, not the verdict table")
    if found["first_row_bottom"] is None or not 0 <= found["first_table_top"] < found["first_row_bottom"] <= SCREEN[1]:
        problems.append(f"verdict table not in the first screen (top {found['first_table_top']})")
    problems += [f"image {i} did not load" for i, image in enumerate(found["images"]) if not image["loaded"]]
    problems += [f"image {i} drawn from {image['points']} point(s)" for i, image in enumerate(found["images"])
                 if not (image["points"] or 0) >= 2]  # null: no data-points, a plot of unknown points
    return problems


def coloured_pixels(png_path):
    from PIL import Image

    pixels = np.asarray(Image.open(png_path).convert("RGB")).astype(int)
    return int(((pixels.max(axis=2) - pixels.min(axis=2)) > 80).sum())  # plot lines and bars; text is grey


@pytest.fixture(scope="module")
def report_html(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("browser")
    weights, onnx = tmp_path / "w.safetensors", tmp_path / "m.onnx"
    weights.write_bytes(b"w")
    onnx.write_bytes(b"m")
    result = make_sweep(tmp_path, "cpu.json", weights, onnx)
    assert main(["report", str(result), "--out", str(tmp_path / "r")]) == 0
    return tmp_path / "r" / "report.html"


def test_the_verdict_table_comes_first_and_every_plot_loads(report_html, tmp_path):
    found = probe(report_html, tmp_path)
    assert answers_first(found) == [] and len(found["images"]) == 2, found


def test_the_check_fails_on_buried_verdicts_broken_plots_and_single_points(report_html, tmp_path):
    page = report_html.read_text()
    buried = tmp_path / "buried" / "report.html"
    buried.parent.mkdir()
    buried.write_text(page.replace("</h1>", "</h1>" + ("<p>measured on ... " + "x" * 200 + "</p>") * 60, 1))  # the old layout
    broken = tmp_path / "broken" / "report.html"
    broken.parent.mkdir()
    broken.write_text(page.replace("data:image/png;base64,", "data:image/png;base64,broken", 1)
                      .replace("data-points='2'", "data-points='1'", 1))
    assert any("not in the first screen" in p for p in answers_first(probe(buried, tmp_path)))
    problems = answers_first(probe(broken, tmp_path))
    assert "image 0 did not load" in problems and any("drawn from 1 point" in p for p in problems), problems


@pytest.mark.parametrize("committed", COMMITTED)
def test_committed_reports_answer_first(committed, tmp_path):
    assert answers_first(probe(ROOT / committed, tmp_path)) == []


def test_page_loads_without_console_errors(report_html, tmp_path):
    run = chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", report_html.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    assert "treefuse per-device report" in run.stdout and "data:image/png;base64," in run.stdout
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console


def test_plots_are_visible_in_a_screenshot(report_html, tmp_path):
    shot = tmp_path / "shot.png"
    run = chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={shot}", report_html.as_uri())
    assert shot.is_file(), run.stderr[-2000:]
    blank = tmp_path / "blank.html"
    blank.write_text(report_html.read_text().replace("data:image/png;base64,", "data:image/png;base64,broken"))
    blank_shot = tmp_path / "blank.png"
    chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={blank_shot}", blank.as_uri())
    assert coloured_pixels(shot) > 2000 > coloured_pixels(blank_shot)  # the check fails when plots do not render
