"""`make arm64-check`: bundles of the shipped weights run on x86 here and on Arm64 (emulated) in a Debian root.

Exports what each format's exporter makes (through the CLI), packs each artifact, runs every
bundle with this workstation's Python and inside the arm64 root (`bundle/arm64_root.sh`),
then writes the results, an x86-vs-Arm64 parity table and a merged report to --out.
The bundles hold crops of ../shared/data, so they stay in the work folder, uncommitted.
"""
from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.files import write_json_atomic
from treefuse.portable.quality import psnr

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO.parent / "shared" / "data" / "heavy-rain-sample5"
CALIB_IMAGES = REPO.parent / "shared" / "data" / "rain100h-train50"
ARM_PYTHON = "/opt/treefuse-venv/bin/python"


@dataclass(frozen=True)
class Target:
    """One artifact to bundle: a committed file, or the export command that makes it."""

    name: str
    kind: str
    file: str
    export: tuple[str, ...] = ()  # `treefuse export ...` arguments; empty: the file is committed


TARGETS = (
    Target("onnx-fp32", "onnx", "reports/artifacts/default.onnx"),
    Target("onnx-int8", "onnx", "reports/artifacts/default.int8.onnx"),
    Target("executorch-fp32", "executorch", "default.pte", ("executorch", "--max-size", "256x256")),
    Target("executorch-int8", "executorch", "default.int8.pte",
           ("executorch", "--max-size", "256x256", "--precision", "int8", "--calib", "{calib}")),
    Target("litert-fp32", "litert", "default.tflite", ("litert", "--size", "64x64")),
    Target("litert-fp16", "litert", "default.fp16.tflite", ("litert", "--size", "64x64", "--precision", "fp16")),
    Target("litert-int8", "litert", "default.int8.tflite",
           ("litert", "--size", "64x64", "--precision", "int8", "--calib", "{calib}")),
)


def treefuse(*args: str, log: Path) -> int:
    """Run the treefuse CLI (this Python's) and append its output to `log`."""
    with open(log, "a") as out:
        out.write(f"\n$ treefuse {' '.join(args)}\n")
        out.flush()
        return subprocess.run([sys.executable, "-m", "treefuse", *args], stdout=out, stderr=subprocess.STDOUT,
                              cwd=REPO).returncode


def make_artifacts(work: Path, log: Path) -> dict[str, Path | str]:
    """name -> artifact path, or why it could not be made (an exporter missing here is said, not hidden)."""
    calib = work / "calib"
    if not calib.is_dir() and treefuse("calib", "build", "--images", str(CALIB_IMAGES), "--count", "16",
                                       "--size", "128x128", "--out", str(calib), log=log):
        raise TreefuseError(f"treefuse calib build failed; see {log}")
    made: dict[str, Path | str] = {}
    for target in TARGETS:
        if not target.export:
            made[target.name] = REPO / target.file
            continue
        path = work / "artifacts" / target.file
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file():
            args = [a.replace("{calib}", str(calib)) for a in target.export]
            code = treefuse("export", *args, "--out", str(path), log=log)
            if code:
                made[target.name] = f"`treefuse export {' '.join(target.export[:1])}` exited {code} (see {log.name})"
                continue
        made[target.name] = path
    return made


def pack_all(artifacts: dict[str, Path | str], work: Path, sizes: str, count: int, log: Path) -> dict[str, Path | str]:
    bundles: dict[str, Path | str] = {}
    for target in TARGETS:
        artifact = artifacts[target.name]
        if isinstance(artifact, str):
            bundles[target.name] = artifact
            continue
        out = work / "bundles" / target.name
        code = treefuse("pack", f"{target.kind}:{artifact}", "--images", str(IMAGES), "--sizes", sizes,
                        "--count", str(count), "--out", str(out), log=log)
        bundles[target.name] = out if code == 0 else f"treefuse pack exited {code} (see {log.name})"
    return bundles


Run = tuple[int, float, str]  # exit code, wall seconds, the error line when it failed


def run_bundle(command: list[str], log: Path) -> Run:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n{done.stdout}{done.stderr}")
    errors = [line for line in done.stderr.splitlines() if line.startswith("run.py:")]
    return done.returncode, time.perf_counter() - start, errors[0] if errors else ""


def run_x86(bundle: Path, results: Path, outputs: Path, log: Path) -> Run:
    return run_bundle([sys.executable, str(bundle / "run.py"), "--json", str(results / f"{bundle.name}.json"),
                       "--iters", "10", "--threads", "2", "--save-outputs", str(outputs / f"{bundle.name}.npz")], log)


def run_arm64(bundle: Path, root: Path, results: Path, outputs: Path, log: Path) -> Run:
    """Copy the bundle into the arm64 root, run it there with the root's Python, bring the files back."""
    inside = root / "work" / "bundles" / bundle.name
    shutil.rmtree(inside, ignore_errors=True)
    shutil.copytree(bundle, inside)
    (root / "work" / "results").mkdir(parents=True, exist_ok=True)
    run = run_bundle(["chroot", str(root), ARM_PYTHON, f"/work/bundles/{bundle.name}/run.py", "--json",
                                f"/work/results/{bundle.name}.json", "--iters", "2", "--threads", "2",
                                "--save-outputs", f"/work/results/{bundle.name}.npz"], log)
    for produced, target in ((f"{bundle.name}.json", results / f"{bundle.name}.json"),
                             (f"{bundle.name}.bench.json", results / f"{bundle.name}.bench.json"),
                             (f"{bundle.name}.npz", outputs / f"{bundle.name}.npz")):
        if (root / "work" / "results" / produced).is_file():
            shutil.copyfile(root / "work" / "results" / produced, target)
    return run


def mount_for_chroot(root: Path) -> None:
    """/proc (the CPU facts qemu shows) and /dev inside the arm64 root, once.

    Not /sys: with the host's CPU topology visible there, ONNX Runtime 1.32 aarch64 segfaults under
    qemu-user while its cpuinfo probes the CPU (seen here 2026-12-03); without it, cpuinfo fails cleanly.
    """
    for source, target, options in (("proc", root / "proc", ["-t", "proc"]), ("/dev", root / "dev", ["--bind"])):
        if subprocess.run(["mountpoint", "-q", str(target)]).returncode != 0:
            subprocess.run(["mount", *options, source, str(target)], check=True)


def compare(name: str, x86: Path, arm: Path, outputs_x86: Path, outputs_arm: Path) -> dict[str, Any]:
    """One table row: both machines' verdicts against the golden outputs, and the machines against each other."""
    row: dict[str, Any] = {"bundle": name}
    for label, folder in (("x86", x86), ("arm64", arm)):
        path = folder / f"{name}.json"
        if path.is_file():
            data = json.loads(path.read_text())
            row[label] = {"passed": data["passed"], "output_psnr_min_db": (data["output_psnr_db"] or {}).get("min"),
                          "task_delta_db": (data.get("task") or {}).get("delta_db"), "failures": data["failures"],
                          "precision": data["gates"].get("precision"), "runtime": data["candidate"]["backend"],
                          "cpu": data["device"]["cpu"], "emulated": data["device"].get("emulated"),
                          "runtime_notes": data["device"].get("runtime_notes", []),
                          "runtime_saw_cpu_features": data["device"].get("runtime_saw_cpu_features")}
    a, b = outputs_x86 / f"{name}.npz", outputs_arm / f"{name}.npz"
    if a.is_file() and b.is_file():
        with np.load(a, allow_pickle=False) as left, np.load(b, allow_pickle=False) as right:
            keys = [k for k in left.files if k.startswith("output_")]
            diffs = [float(np.max(np.abs(left[k] - right[k]))) for k in keys]
            psnrs = [psnr(np.clip(left[k], 0, 1), np.clip(right[k], 0, 1)) for k in keys]
        row["x86_vs_arm64"] = {"max_abs_diff": max(diffs), "psnr_min_db": min(psnrs), "images": len(keys)}
    return row


def table(rows: list[dict[str, Any]]) -> str:
    def verdict(side: dict[str, Any] | None, error: str = "") -> str:
        if not side:
            return f"no result: {error.removeprefix('run.py: error: ')[:110]}…" if error else "not run"
        word = "passed" if side["passed"] else "FAILED"
        return f"{word}: {side['output_psnr_min_db']:.2f} dB, task Δ {side['task_delta_db']:+.3f} dB"

    lines = ["| bundle | x86 verdict (min output PSNR vs golden, task Δ) | Arm64 verdict (emulated) "
             "| x86 vs Arm64: max abs diff, min PSNR | Arm64 CPU features seen by the runtime |", "|---|---|---|---|---|"]
    for row in rows:
        cross = row.get("x86_vs_arm64")
        arm = row.get("arm64") or {}
        seen = ("yes" if arm.get("runtime_saw_cpu_features") else "no: its cpuinfo failed") if arm else "—"
        if arm and row["bundle"].startswith("litert"):  # LiteRT says when it applies XNNPACK (x86 does)
            xnnpack = any("XNNPACK delegate" in note for note in arm.get("runtime_notes", []))
            seen += "; XNNPACK delegate " + ("created" if xnnpack else "not reported")
        cross_text = (f"{cross['max_abs_diff']:.2e}, {cross['psnr_min_db']:.1f} dB" if cross else "—")
        runs = row.get("runs", {})
        lines.append(f"| {row['bundle']} | {verdict(row.get('x86'), runs.get('x86_error', ''))} | "
                     f"{verdict(row.get('arm64'), runs.get('arm64_error', runs.get('skipped', '')))} | {cross_text} | "
                     f"{seen}; hwcaps {', '.join(arm.get('cpu', {}).get('isa_flags', [])) or '—'} |")
    return "\n".join(lines)


def page(rows: list[dict[str, Any]], sizes: str, count: int) -> str:
    """The table with what it was measured on, for reports/device/x86-vs-arm64.md."""
    x86_cpu = next((row["x86"]["cpu"] for row in rows if row.get("x86")), {"model": "?", "isa_flags": []})
    return (f"# The same bundles on x86 and on Arm64 (`make arm64-check`, {time.strftime('%Y-%m-%d')})\n\n"
            f"Each bundle: {count} centre crops of {sizes} from `../shared/data/heavy-rain-sample5`, reference outputs "
            "from the shipped FP32 weights in PyTorch, the gates of the artifact's precision. x86: this "
            f"{x86_cpu.get('logical_cores', '?')}-core {x86_cpu['model']} ({', '.join(x86_cpu['isa_flags'])}) with the "
            "project's runtimes. Arm64: the aarch64 wheels of the runtimes "
            "in a Debian arm64 root under qemu-user (emulated: verdicts are the Arm builds' kernels, latency means "
            "nothing). 'hwcaps' are the features qemu offers the process; the runtimes' own CPU probe (cpuinfo) "
            "failed under emulation, so they may have chosen generic kernels. The last column but one compares the "
            "two machines' outputs directly.\n\n" + table(rows) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("/var/cache/treefuse/arm64-root"))
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "arm64-check")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "device")
    parser.add_argument("--sizes", default="64x64")
    parser.add_argument("--count", type=int, default=3)
    parser.add_argument("--only", action="append", default=[], help="bundle names to run (default: all)")
    args = parser.parse_args(argv)
    if not IMAGES.is_dir():
        raise SystemExit(f"arm64-check: error: {IMAGES} is missing; it needs the shared heavy-rain sample")
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "arm64-check.log"
    bundles = pack_all(make_artifacts(args.work, log), args.work, args.sizes, args.count, log)
    x86, arm = args.out / "x86", args.out / "arm64"
    outputs_x86, outputs_arm = args.work / "outputs" / "x86", args.work / "outputs" / "arm64"
    for folder in (x86, arm, outputs_x86, outputs_arm):
        folder.mkdir(parents=True, exist_ok=True)
    mount_for_chroot(args.root)
    runs: dict[str, Any] = {}
    for name, bundle in bundles.items():
        if args.only and name not in args.only:
            continue
        if isinstance(bundle, str):
            runs[name] = {"skipped": bundle}
            print(f"{name}: not run: {bundle}", flush=True)
            continue
        for label, folder in (("x86", x86), ("arm64", arm)):  # a stale result must not stand for this run
            for stale in (folder / f"{name}.json", folder / f"{name}.bench.json"):
                stale.unlink(missing_ok=True)
        x86_run = run_x86(bundle, x86, outputs_x86, log)
        arm_run = run_arm64(bundle, args.root, arm, outputs_arm, log)
        runs[name] = {f"{label}_{key}": value for label, run in (("x86", x86_run), ("arm64", arm_run))
                      for key, value in zip(("exit", "wall_s", "error"), (run[0], round(run[1], 1), run[2]))}
        print(f"{name}: x86 exit {x86_run[0]} ({x86_run[1]:.0f} s) {x86_run[2]}; "
              f"arm64 exit {arm_run[0]} ({arm_run[1]:.0f} s) {arm_run[2]}", flush=True)
    rows = [{**compare(name, x86, arm, outputs_x86, outputs_arm), "runs": runs[name]} for name in runs]
    write_json_atomic(args.out / "x86-vs-arm64.json", {"rows": rows, "sizes": args.sizes, "count": args.count})
    (args.out / "x86-vs-arm64.md").write_text(page(rows, args.sizes, args.count))
    print(table(rows))
    report_and_verify(args.out, [b for b in bundles.values() if isinstance(b, Path)], log)
    return 0


def report_and_verify(out: Path, bundles: list[Path], log: Path) -> None:
    """One report over both machines' results, and every result checked against its bundle (verify.txt)."""
    results = [str(p) for folder in (out / "x86", out / "arm64") for p in sorted(folder.glob("*.json"))]
    if not results:
        return
    note = ("Arm64 figures come from Arm's own runtime builds under qemu-user on this x86 host: their parity verdicts "
            "are Arm kernels' verdicts, their latency is marked emulated and means nothing. x86: the same bundles on "
            "the 2-core AMD EPYC (AVX2+FMA, no AVX-512/VNNI), shared with training.")
    treefuse("report", *results, "--out", str(out), "--note", note, log=log)
    done = subprocess.run([sys.executable, "-m", "treefuse", "report", "--verify", str(out / "report.md"), *results,
                           *[arg for b in bundles for arg in ("--bundle", str(b))]], capture_output=True, text=True,
                          cwd=REPO)
    (out / "verify.txt").write_text(f"$ treefuse report --verify reports/device/report.md reports/device/{{x86,arm64}}/*.json "
                                    "--bundle outputs/arm64-check/bundles/...\n"
                                    f"{done.stdout}{done.stderr}exit {done.returncode}\n")


if __name__ == "__main__":
    sys.exit(main())
