"""Pairs a model was fine-tuned on and pairs it is judged on must differ: a gate passed on training pairs proves little.

A training run's data_manifest.json lists every file it read with its sha256 (train/run_dir.py); a judged
folder's pairs are compared by content, so a copy under another name still counts.
"""
from __future__ import annotations

import json
from pathlib import Path

from treefuse.files import sha256_file

MANIFEST_NAME = "data_manifest.json"


def trained_sha256s(run_dir: str | Path) -> set[str]:
    """The sha256 of every file a run's data manifest lists (empty when it has none)."""
    try:
        manifest = json.loads((Path(run_dir) / MANIFEST_NAME).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return set()
    groups = manifest.get("files", {}) if isinstance(manifest, dict) else {}
    return {entry["sha256"] for entries in groups.values() if isinstance(entries, list)
            for entry in entries if isinstance(entry, dict) and isinstance(entry.get("sha256"), str)}


def judged_pairs_trained_on(run_dir: str | Path, paired_dir: str | Path) -> list[str]:
    """The judged pairs (rain file names) whose rainy or clean image the run trained on."""
    from treefuse.images import paired_images

    seen = trained_sha256s(run_dir)
    return [rain.name for rain, clean in paired_images(paired_dir)
            if seen and (sha256_file(rain) in seen or sha256_file(clean) in seen)]


def overlap_warning(run_dir: str | Path, paired_dir: str | Path) -> str | None:
    """One line when the judged pairs overlap the run's training data, else None."""
    shared = judged_pairs_trained_on(run_dir, paired_dir)
    if not shared:
        return None
    return (f"warning: {len(shared)} judged pair(s) ({', '.join(shared[:3])}{', ...' if len(shared) > 3 else ''}) "
            f"were in the training data of {run_dir}: the gate then says little about unseen frames; judge on "
            "pairs the run never saw, or train on others (--data)")
