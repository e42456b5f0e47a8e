"""`make gpu-pack`: prepare `.gpu/` (git-ignored) for a lent GPU and print what to send with it.

The device machine receives the working tree plus the ignored paths named in `carry`, 64 MiB in
all, and has no network and no `../shared`. So this copies the training data that fits (the
Rain100H pairs, heavy-rain-sample5, a fixed selection of the clean photos: the same selection
every time, so a carried run's data manifest still matches when it resumes), the pure-Python
packages that machine may lack (from this venv, unpacked as a wheel installs them), and a
returned run to continue (--resume) or weights to start from (--init).
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACK = ROOT / ".gpu"
CARRY_LIMIT = 64 * 2**20  # the device machine's limit on the carried tree, all of it
MARGIN = 3 * 2**20  # room for files written after packing (a commit, a result)
CLEAN_BUDGET = 22 * 2**20  # clean photos: a fixed budget, so the selection does not move with the tree's size
PAIRED = ("rain100h-train50", "heavy-rain-sample5")
CLEAN_ORDER = ("Kodak24", "McMaster", "Set14", "Urban100")
# Held out of all training (the street-holdout8 judge set; train/configs/street-depth.yaml).
HELD_OUT_PHOTOS = {f"Urban100/img_{n:03d}.png" for n in (6, 19, 31, 44, 57, 70, 82, 95)}
CARRIED_PACKAGES = ("pypng",)  # pure Python, imported by treefuse.images, not on the GPU machine's list
TIMEOUT_S = 570  # the call's limit: gpu/run.py's budget (480 s) plus its start and packing
COMMAND = "if command -v make >/dev/null; then make gpu-run; else python3 gpu/run.py; fi"


def tree_bytes() -> int:
    """Bytes of what travels without `carry`: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    return sum((ROOT / name).stat().st_size for name in listed if name and (ROOT / name).is_file())


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def copy_data(source: Path, target: Path) -> list[str]:
    """The paired folders whole, then clean photos in a fixed order up to CLEAN_BUDGET; returns the photos."""
    for name in PAIRED:
        if not (source / name).is_dir():
            raise SystemExit(f"treefuse: error: {source / name} is missing; point --data at ../shared/data")
        shutil.copytree(source / name, target / name)
    chosen, used = [], 0
    for group in CLEAN_ORDER:
        for photo in sorted((source / "clean" / group).glob("*.png")):
            relative = f"{group}/{photo.name}"
            size = photo.stat().st_size
            if relative in HELD_OUT_PHOTOS or used + size > CLEAN_BUDGET:
                continue
            (target / "clean" / group).mkdir(parents=True, exist_ok=True)
            shutil.copy2(photo, target / "clean" / relative)
            chosen.append(relative)
            used += size
    return chosen


def copy_package(name: str, site: Path) -> None:
    """One pure-Python distribution from this venv into `site`, laid out as its wheel installs it."""
    dist = importlib.metadata.distribution(name)
    base = Path(dist.locate_file(""))
    for entry in dist.files or []:
        relative = Path(entry)
        if relative.parts[0] == ".." or "__pycache__" in relative.parts:
            continue  # console scripts and bytecode
        if relative.suffix in (".so", ".pyd"):
            raise SystemExit(f"treefuse: error: {name} is not pure Python ({relative}); it cannot be carried as is")
        (site / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(base / relative, site / relative)


def main(argv: list[str] | None = None) -> int:
    """Rebuild .gpu/ (data, site, resume, init), check the carry limit, print what to send."""
    parser = argparse.ArgumentParser(prog="make gpu-pack", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"), help="where the data lives")
    parser.add_argument("--resume", metavar="TAR", help="a gpu-run.tar.gz a call returned: the next call continues it")
    parser.add_argument("--init", metavar="W", help="weights to start a new run from (default: the shipped ones)")
    parser.add_argument("--into", default=str(PACK), help=argparse.SUPPRESS)  # tests pack elsewhere
    args = parser.parse_args(argv)
    for path in (args.resume, args.init):
        if path and not Path(path).is_file():
            raise SystemExit(f"treefuse: error: {path} is not a file; give a gpu-run.tar.gz or a .safetensors")
    pack = Path(args.into)
    staged = pack.parent / f".{pack.name}.new.tmp"
    shutil.rmtree(staged, ignore_errors=True)
    photos = copy_data(Path(args.data), staged / "data")
    for name in CARRIED_PACKAGES:
        copy_package(name, staged / "site")
    if args.resume:
        (staged / "resume").mkdir()
        shutil.copy2(args.resume, staged / "resume" / "gpu-run.tar.gz")
    init = None
    if args.init:
        (staged / "init").mkdir()
        init = staged / "init" / Path(args.init).name
        shutil.copy2(args.init, init)
    total = tree_bytes() + folder_bytes(staged)
    if total > CARRY_LIMIT - MARGIN:
        shutil.rmtree(staged)
        raise SystemExit(f"treefuse: error: tree + .gpu = {total / 2**20:.1f} MiB, over the {CARRY_LIMIT // 2**20} MiB "
                         f"carry limit less {MARGIN // 2**20} MiB; lower CLEAN_BUDGET in gpu/pack.py")
    shutil.rmtree(pack, ignore_errors=True)
    os.replace(staged, pack)
    variables = f"INIT=.gpu/init/{init.name} " if init else ""
    print(f".gpu/ ready: {len(photos)} clean photos, {', '.join(PAIRED)}, packages {', '.join(CARRIED_PACKAGES)}"
          f"{', a run to resume' if args.resume else ''}; tree + .gpu = {total / 2**20:.1f} MiB of 64")
    print("send to the device machine (the `run` tool):")
    print('  carry:     [".gpu"]')
    print(f"  timeout_s: {TIMEOUT_S}")
    print(f"  command:   {variables}{COMMAND}" if not variables else
          f"  command:   export {variables.strip()}; {COMMAND}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
