"""The committed CPU report still describes the artifacts in the repository."""
import os
from pathlib import Path

from treefuse.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_committed_report_verifies(monkeypatch):
    # Fails when the shipped weights or reports/artifacts change without `bash benchmarks/cpu_report.sh`.
    monkeypatch.chdir(ROOT)
    assert main(["report", "--verify", "reports/report.md"]) == 0
    assert os.path.getsize(ROOT / "reports" / "report.html") > 10_000
