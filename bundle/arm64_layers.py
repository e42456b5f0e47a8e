"""Where an Arm CPU first goes wrong: a bundle's `run.py --layers` on x86 and in emulated Armv9 views, compared.

Runs the bundle here and inside the arm64 root (`bundle/arm64_root.sh`) under qemu's `max` CPU with SVE
offered and with `sve=off`, each shown to the runtimes as Neoverse-V2 (`bundle/arm64_views.py`); then
`treefuse diff --ref torch:W --cand-layers` names each run's first layer below the gate, and each Arm run's
layers are compared with x86's directly (the first layer that differs at all, and the first below the gate).
Usage: python -m treefuse.bundle.arm64_layers --bundle B [--root R] [--work W] [--out reports/inspect]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
from pathlib import Path
from typing import Any

from treefuse.bundle.arm64_check import run_bundle
from treefuse.bundle.arm64_views import VIEWS, ArmView, chroot_command, mount_for_chroot, show_cpu, unmount_chroot
from treefuse.files import write_json_atomic

REPO = Path(__file__).resolve().parents[1]
ARMV9 = next(view for view in VIEWS if view.name == "arm64-armv9")
ARMV9_NO_SVE = dataclasses.replace(ARMV9, name="arm64-armv9-nosve", qemu_cpu="max,sve=off",
                                   describes="qemu `max` with SVE off: NEON, dot product, i8mm, BF16 (as Neoverse-V2)")


def run_args(results: str, name: str, crop: str) -> list[str]:
    return ["--json", f"{results}/{name}.json", "--iters", "1", "--warmup", "0", "--threads", "2",
            "--save-outputs", f"{results}/{name}.outputs.npz", "--layers", f"{results}/{name}.layers.npz",
            "--layers-crop", crop]


def run_x86(bundle: Path, work: Path, crop: str, log: Path) -> dict[str, Any]:
    code, seconds, error = run_bundle([sys.executable, str(bundle / "run.py"), *run_args(str(work), "x86", crop)], log)
    return {"exit": code, "wall_s": round(seconds, 1), "error": error}


def run_view(bundle: Path, root: Path, view: ArmView, work: Path, crop: str, log: Path) -> dict[str, Any]:
    inside = root / "work" / "layers"
    shutil.rmtree(inside, ignore_errors=True)
    inside.mkdir(parents=True)
    show_cpu(root, view, f"/work/bundles/{bundle.name}")
    code, seconds, error = run_bundle(chroot_command(root, view, f"/work/bundles/{bundle.name}/run.py", "--emulated",
                                                     *run_args("/work/layers", view.name, crop)), log)
    for produced in inside.iterdir():
        shutil.copyfile(produced, work / produced.name)
    return {"exit": code, "wall_s": round(seconds, 1), "error": error, "qemu_cpu": view.qemu_cpu}


def versus_x86(x86: Path, arm: Path, min_layer_psnr_db: float) -> dict[str, Any]:
    """One Arm run's layers against x86's: per layer the worst PSNR and error, the first that differs at all."""
    from treefuse.runtimes.inspect.compare import compare_layers, first_diverging, worst_of
    from treefuse.runtimes.inspect.diff import read_recorded

    _, x86_samples = read_recorded(x86)
    _, arm_samples = read_recorded(arm)
    rows = worst_of(compare_layers(x86_layers, arm_layers)
                    for (_, _, x86_layers), (_, _, arm_layers) in zip(x86_samples, arm_samples))
    return {"reference": str(x86.name), "candidate": str(arm.name), "images": len(x86_samples),
            "first_differing_layer": first_diverging(rows, math.inf),
            "first_below_threshold": first_diverging(rows, min_layer_psnr_db), "min_layer_psnr_db": min_layer_psnr_db,
            "layers": [{**row, "psnr_db": row["psnr_db"] if math.isfinite(row["psnr_db"]) else str(row["psnr_db"])}
                       for row in rows]}


def diff_against_torch(layers: Path, weights: str, out: Path, log: Path) -> int:
    from treefuse.bundle.arm64_check import treefuse

    return treefuse("diff", "--ref", f"torch:{weights}", "--cand-layers", str(layers), "--json", str(out), log=log)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, required=True, help="a bundle packed with its layers program")
    parser.add_argument("--root", type=Path, default=Path("/var/cache/treefuse/arm64-root"))
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "arm64-layers")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "inspect")
    parser.add_argument("--weights", default=str(REPO / "treefuse" / "weights" / "default.safetensors"))
    parser.add_argument("--crop", default="128x128", help="--layers-crop of each run (default 128x128)")
    parser.add_argument("--min-layer-psnr", type=float, default=35.0)
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "arm64-layers.log"
    runs = {"x86": run_x86(args.bundle, args.work, args.crop, log)}
    shutil.rmtree(args.root / "work" / "bundles" / args.bundle.name, ignore_errors=True)
    shutil.copytree(args.bundle, args.root / "work" / "bundles" / args.bundle.name)
    mount_for_chroot(args.root)
    try:
        for view in (ARMV9, ARMV9_NO_SVE):
            runs[view.name] = run_view(args.bundle, args.root, view, args.work, args.crop, log)
            print(f"{view.name}: {runs[view.name]}", flush=True)
    finally:
        unmount_chroot(args.root)
    summary: dict[str, Any] = {"bundle": args.bundle.name, "crop": args.crop, "runs": runs, "vs_torch": {}, "vs_x86": {}}
    for name in runs:
        layers = args.work / f"{name}.layers.npz"
        if not layers.is_file():
            continue
        diff_json = args.out / f"armv9.diff.torch-vs-{name}.json"
        diff_against_torch(layers, args.weights, diff_json, log)
        if diff_json.is_file():
            diff = json.loads(diff_json.read_text())
            summary["vs_torch"][name] = {"first_diverging_layer": diff["first_diverging_layer"],
                                         "output_psnr_db": [image["output_psnr_db"] for image in diff["images"]]}
        if name != "x86":
            versus = versus_x86(args.work / "x86.layers.npz", layers, args.min_layer_psnr)
            write_json_atomic(args.out / f"armv9.layers.x86-vs-{name}.json", versus)
            summary["vs_x86"][name] = {key: value for key, value in versus.items() if key != "layers"}
    write_json_atomic(args.out / "armv9.summary.json", summary)
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
