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

import numpy as np

from treefuse.bundle.arm64_check import run_bundle
from treefuse.bundle.arm64_views import VIEWS, ArmView, chroot_command, mount_for_chroot, show_cpu, unmount_chroot
from treefuse.files import write_json_atomic
from treefuse.runtimes.inspect.names import OUTPUT

REPO = Path(__file__).resolve().parents[1]
ARMV9 = next(view for view in VIEWS if view.name == "arm64-armv9")
ARMV9_NO_SVE = dataclasses.replace(ARMV9, name="arm64-armv9-nosve", qemu_cpu="max,sve=off",
                                   describes="qemu `max` with SVE off: NEON, dot product, i8mm, BF16 (as Neoverse-V2)")
SUMMARY = "armv9.summary.json"


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


def where_it_differs(x86: Path, arm: Path, layer: str) -> dict[str, Any]:
    """Which elements of `layer` differ from x86's: overall, and by channel and column parity (SIMD tiles show)."""
    from treefuse.runtimes.inspect.diff import read_recorded

    differing = [np.abs(a[2][layer] - b[2][layer]) > 0 for a, b in zip(read_recorded(x86)[1], read_recorded(arm)[1])]
    return {"layer": layer, "differing_fraction": float(np.mean([d.mean() for d in differing])),
            "differing_fraction_by_channel_then_column_parity": [
                [float(np.mean([d[:, channel::2, :, column::2].mean() for d in differing])) for column in (0, 1)]
                for channel in (0, 1)]}


def exposure_effect(layers: Path, outputs: Path) -> float | None:
    """Largest |layers program output - program output| of one run, where both ran on the same inputs."""
    from treefuse.runtimes.inspect.diff import read_recorded

    samples = read_recorded(layers)[1]
    with np.load(outputs, allow_pickle=False) as plain:
        programs = [plain[f"output_{index:03d}"] for index in range(len(samples))]
    pairs = [(layers_of[OUTPUT][0].transpose(1, 2, 0), program) for (_, _, layers_of), program in zip(samples, programs)]
    if any(exposed.shape != program.shape for exposed, program in pairs):
        return None  # --crop smaller than the golden crops: not the same inputs
    return max(float(np.max(np.abs(exposed - program))) for exposed, program in pairs)


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
    parser.add_argument("--compare-only", action="store_true", help="compare the runs already in --work again")
    args = parser.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "arm64-layers.log"
    runs = json.loads((args.out / SUMMARY).read_text())["runs"] if args.compare_only else run_all(args, log)
    summary = compare_runs(runs, args, log)
    write_json_atomic(args.out / SUMMARY, summary)
    print(json.dumps(summary, indent=1))
    return 0


def run_all(args: argparse.Namespace, log: Path) -> dict[str, Any]:
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
    return runs


def compare_runs(runs: dict[str, Any], args: argparse.Namespace, log: Path) -> dict[str, Any]:
    """Each run against PyTorch (`treefuse diff`, one JSON each) and each Arm run against x86, layer by layer."""
    summary: dict[str, Any] = {"bundle": args.bundle.name, "crop": args.crop, "runs": runs, "vs_torch": {},
                               "vs_x86": {}}
    for name in runs:
        layers = args.work / f"{name}.layers.npz"
        if not layers.is_file():
            continue
        runs[name]["layers_output_vs_program_max_abs_diff"] = exposure_effect(layers, args.work / f"{name}.outputs.npz")
        diff_json = args.out / f"armv9.diff.torch-vs-{name}.json"
        diff_against_torch(layers, args.weights, diff_json, log)
        if diff_json.is_file():
            diff = json.loads(diff_json.read_text())
            summary["vs_torch"][name] = {"first_diverging_layer": diff["first_diverging_layer"],
                                         "output_psnr_db": [image["output_psnr_db"] for image in diff["images"]]}
        if name != "x86":
            versus = versus_x86(args.work / "x86.layers.npz", layers, args.min_layer_psnr)
            if versus["first_differing_layer"]:
                versus["first_difference"] = where_it_differs(args.work / "x86.layers.npz", layers,
                                                              versus["first_differing_layer"])
            write_json_atomic(args.out / f"armv9.layers.x86-vs-{name}.json", versus)
            summary["vs_x86"][name] = {key: value for key, value in versus.items() if key != "layers"}
    return summary


if __name__ == "__main__":
    sys.exit(main())
