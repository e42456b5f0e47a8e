"""reports/candidates/: every committed candidate is its file, its scores and the rule it was judged by."""
import hashlib
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CANDIDATES = ROOT / "reports" / "candidates"
VERDICT_PREFIXES = ("pass", "fail: ", "not run: ")


def problems(record_path: Path) -> list[str]:
    """What is wrong with one `<name>.json` and its weights (reports/candidates/README.md)."""
    record = json.loads(record_path.read_text())
    found = []
    if record.get("kind") != "treefuse-candidate" or record.get("name") != record_path.stem:
        found.append("kind must be treefuse-candidate and name the file's stem")
    weights = record_path.parent / str(record.get("weights", ""))
    if not weights.is_file():
        found.append(f"weights {weights.name} missing")
    elif hashlib.sha256(weights.read_bytes()).hexdigest() != record.get("sha256"):
        found.append(f"{weights.name} does not match its sha256")
    clauses = record.get("rule", {}).get("clauses", {})
    if not clauses or not record.get("rule", {}).get("where"):
        found.append("the rule needs its clauses (with thresholds) and where it was fixed")
    verdict = record.get("verdict", {})
    if set(verdict) != set(clauses) or not all(str(v).startswith(VERDICT_PREFIXES) for v in verdict.values()):
        found.append("the verdict needs one pass / fail: / not run: entry per clause")
    if record.get("shipped") and not all(v == "pass" for v in verdict.values()):
        found.append("shipped although a clause did not pass")
    if not record.get("scores") or not all({"set", "psnr_y_db", "command"} <= set(s) for s in record["scores"]):
        found.append("scores need set, psnr_y_db and command")
    return found


@pytest.mark.parametrize("record", sorted(CANDIDATES.glob("*.json")), ids=lambda p: p.stem)
def test_committed_candidates_are_whole(record):
    assert not problems(record)


def _example(tmp_path: Path) -> Path:
    weights = tmp_path / "c0-example.safetensors"
    shutil.copy(ROOT / "treefuse" / "weights" / "default.safetensors", weights)
    record = {"kind": "treefuse-candidate", "schema": 1, "name": "c0-example", "weights": weights.name,
              "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
              "rule": {"where": "docs/model_card.md", "clauses": {"b": "H5 >= 24.00 dB"}},
              "scores": [{"set": "H5", "psnr_y_db": 24.1, "command": "treefuse evaluate"}],
              "verdict": {"b": "pass"}, "shipped": True}
    path = tmp_path / "c0-example.json"
    path.write_text(json.dumps(record))
    return path


def test_the_check_finds_a_changed_file_and_a_shipped_failure(tmp_path):
    path = _example(tmp_path)
    assert problems(path) == []
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "verdict": {"b": "fail: H5 23.9 dB"}}))
    assert problems(path) == ["shipped although a clause did not pass"]
    path.write_text(json.dumps(record))
    with open(tmp_path / "c0-example.safetensors", "ab") as weights:
        weights.write(b"\0")
    assert problems(path) == ["c0-example.safetensors does not match its sha256"]


@pytest.mark.parametrize("script, args, message", [
    ("int8_rule.sh", [], "usage: "),
    ("int8_rule.sh", ["c0", "w.safetensors", "ort-s9"], "unknown recipe ort-s9"),
    ("score.sh", ["c0"], "usage: ")])
def test_the_scoring_scripts_refuse_bad_arguments_in_one_line_before_any_work(script, args, message):
    import subprocess
    before = sorted((ROOT / "outputs").glob("candidates/c0*"))
    done = subprocess.run(["bash", str(CANDIDATES / script), *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.startswith(message) and done.stderr.count("\n") == 1
    assert sorted((ROOT / "outputs").glob("candidates/c0*")) == before  # nothing made
