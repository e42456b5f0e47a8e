"""report.html in a real headless Chromium: it loads without console errors and its plots are visible in a screenshot."""
import shutil
import subprocess

import numpy as np
import pytest

from treefuse.cli import main
from report_fakes import make_sweep

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (run `make browser`)")]
pytest.importorskip("matplotlib", reason="report plots need matplotlib (pip install 'treefuse[report]')")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def chromium(tmp_path, *args):
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


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


def test_page_loads_without_console_errors(report_html, tmp_path):
    run = chromium(tmp_path, "--enable-logging=stderr", "--v=0", "--dump-dom", report_html.as_uri())
    assert run.returncode == 0, run.stderr[-2000:]
    assert "treefuse per-device report" in run.stdout and "data:image/png;base64," in run.stdout
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console


def test_plots_are_visible_in_a_screenshot(report_html, tmp_path):
    shot = tmp_path / "shot.png"
    run = chromium(tmp_path, "--window-size=1400,900", f"--screenshot={shot}", report_html.as_uri())
    assert shot.is_file(), run.stderr[-2000:]
    blank = tmp_path / "blank.html"
    blank.write_text(report_html.read_text().replace("data:image/png;base64,", "data:image/png;base64,broken"))
    blank_shot = tmp_path / "blank.png"
    chromium(tmp_path, "--window-size=1400,900", f"--screenshot={blank_shot}", blank.as_uri())
    assert coloured_pixels(shot) > 2000 > coloured_pixels(blank_shot)  # the check fails when plots do not render
