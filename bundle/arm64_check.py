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
from treefuse.bundle.arm64_views import VIEWS, ArmView, chroot_command, mount_for_chroot, show_cpu, unmount_chroot
from treefuse.portable.quality import psnr

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO.parent / "shared" / "data" / "heavy-rain-sample5"
CALIB_IMAGES = REPO.parent / "shared" / "data" / "rain100h-train50"


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
    from treefuse.progress import progress_bar

    made: dict[str, Path | str] = {}
    for target in progress_bar(TARGETS, desc="arm64-check exports", unit="artifact"):
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
        bench = sizes.split(",")[0].replace("full", "frame")  # emulated CPUs are slow: time a crop, not a frame
        code = treefuse("pack", f"{target.kind}:{artifact}", "--images", str(IMAGES), "--sizes", sizes,
                        "--bench-size", bench, "--count", str(count), "--out", str(out), log=log)
        bundles[target.name] = out if code == 0 else f"treefuse pack exited {code} (see {log.name})"
    return bundles


Run = tuple[int, float, str]  # exit code, wall seconds, the error line when it failed


def run_bundle(command: list[str], log: Path) -> Run:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    with open(log, "a") as out:
        out.write(f"\n$ {' '.join(command)}\n{done.stdout}{done.stderr}")
    errors = [line for line in done.stderr.splitlines() if line.startswith("run.py:")]
    if done.returncode < 0:  # the runtime took the process down: outside run.py's exit contract, said as such
        errors.insert(0, f"the runtime crashed the process (signal {-done.returncode})")
    return done.returncode, time.perf_counter() - start, errors[0] if errors else ""


def run_x86(bundle: Path, results: Path, outputs: Path, log: Path) -> Run:
    return run_bundle([sys.executable, str(bundle / "run.py"), "--json", str(results / f"{bundle.name}.json"),
                       "--iters", "10", "--threads", "2", "--save-outputs", str(outputs / f"{bundle.name}.npz")], log)


def run_arm64(bundle: Path, root: Path, view: ArmView, results: Path, outputs: Path, log: Path) -> Run:
    """Run the bundle (copied into the root) there, emulated, and bring its files back."""
    inside = root / "work" / "results"
    inside.mkdir(parents=True, exist_ok=True)
    for old in inside.glob(f"{bundle.name}.*"):
        old.unlink()
    run = run_bundle(chroot_command(root, view, f"/work/bundles/{bundle.name}/run.py", "--json",
                                    f"/work/results/{bundle.name}.json", "--iters", "1", "--warmup", "0",
                                    "--threads", "2", "--emulated", "--save-outputs",
                                    f"/work/results/{bundle.name}.npz"), log)
    for produced, target in ((f"{bundle.name}.json", results / f"{bundle.name}.json"),
                             (f"{bundle.name}.bench.json", results / f"{bundle.name}.bench.json"),
                             (f"{bundle.name}.npz", outputs / f"{bundle.name}.npz")):
        if (inside / produced).is_file():
            shutil.copyfile(inside / produced, target)
    return run


def side(path: Path) -> dict[str, Any] | None:
    """One machine's verdict on one bundle, as the table shows it."""
    if not path.is_file():
        return None
    data = json.loads(path.read_text())
    return {"passed": data["passed"], "output_psnr_min_db": (data["output_psnr_db"] or {}).get("min"),
            "task_delta_db": (data.get("task") or {}).get("delta_db"), "failures": data["failures"],
            "precision": data["gates"].get("precision"), "runtime": data["candidate"]["backend"],
            "cpu": data["device"]["cpu"], "runtime_notes": data["device"].get("runtime_notes", []),
            "runtime_saw_cpu_features": data["device"].get("runtime_saw_cpu_features")}


def versus(a: Path, b: Path) -> dict[str, Any] | None:
    """Two machines' outputs of one bundle compared directly."""
    if not (a.is_file() and b.is_file()):
        return None
    with np.load(a, allow_pickle=False) as left, np.load(b, allow_pickle=False) as right:
        keys = [k for k in left.files if k.startswith("output_")]
        return {"max_abs_diff": max(float(np.max(np.abs(left[k] - right[k]))) for k in keys),
                "psnr_min_db": min(psnr(np.clip(left[k], 0, 1), np.clip(right[k], 0, 1)) for k in keys),
                "images": len(keys)}


def compare(name: str, out: Path, work: Path, views: tuple[ArmView, ...]) -> dict[str, Any]:
    row: dict[str, Any] = {"bundle": name, "x86": side(out / "x86" / f"{name}.json"), "views": {}}
    for view in views:
        row["views"][view.name] = {"result": side(out / view.name / f"{name}.json"),
                                   "vs_x86": versus(work / "outputs" / "x86" / f"{name}.npz",
                                                    work / "outputs" / view.name / f"{name}.npz")}
    return row


def cell(result: dict[str, Any] | None, error: str = "", cross: dict[str, Any] | None = None) -> str:
    if not result:
        reason = error.removeprefix("run.py: error: ")
        return f"no result: {reason[:90]}{'…' if len(reason) > 90 else ''}" if error else "not run"
    # float(): JSON keeps an infinite PSNR (identical outputs) as the string "inf"
    text = (f"{'passed' if result['passed'] else 'FAILED'} {float(result['output_psnr_min_db']):.2f} dB, "
            f"Δ {result['task_delta_db']:+.3f}")
    return text + (f"; vs x86 {float(cross['psnr_min_db']):.1f} dB (max {cross['max_abs_diff']:.1e})" if cross else "")


def run_error(runs: dict[str, Any], label: str) -> str:
    """Why a run left no result: its error line, a crash, or why it was skipped."""
    code = runs.get(f"{label}_exit")
    if isinstance(code, int) and code < 0 and not runs.get(f"{label}_error"):
        return f"the runtime crashed the process (signal {-code})"
    return runs.get(f"{label}_error") or runs.get("skipped", "")


def table(rows: list[dict[str, Any]], views: tuple[ArmView, ...]) -> str:
    lines = ["| bundle | x86 | " + " | ".join(v.name for v in views) + " |", "|---" * (len(views) + 2) + "|"]
    for row in rows:
        runs = row.get("runs", {})
        cells = [cell(row["views"][v.name]["result"], run_error(runs, v.name), row["views"][v.name]["vs_x86"])
                 for v in views]
        lines.append(f"| {row['bundle']} | {cell(row['x86'], run_error(runs, 'x86'))} | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


def views_table(rows: list[dict[str, Any]], views: tuple[ArmView, ...]) -> str:
    """What each emulated CPU offered and what the runtimes made of it."""
    lines = ["| view | qemu CPU | /proc/cpuinfo shown | hwcaps offered | runtimes' CPU probe | LiteRT's XNNPACK delegate |",
             "|---|---|---|---|---|---|"]
    for view in views:
        results = {row["bundle"]: row["views"][view.name]["result"] for row in rows}
        onnx = results.get("onnx-fp32") or {}
        litert = results.get("litert-fp32") or {}
        probe = "—" if not onnx else "saw the CPU" if onnx.get("runtime_saw_cpu_features") else "failed (cpuinfo)"
        xnnpack = "—" if not litert else "created" if any("XNNPACK delegate" in n for n in litert["runtime_notes"]) \
            else "not reported"
        lines.append(f"| {view.name}: {view.describes} | {view.qemu_cpu} | "
                     f"{'the x86 host' + chr(39) + 's' if view.part is None else 'Arm, part ' + view.part} | "
                     f"{', '.join(onnx.get('cpu', {}).get('isa_flags', [])) or '—'} | {probe} | {xnnpack} |")
    return "\n".join(lines)


def page(rows: list[dict[str, Any]], views: tuple[ArmView, ...], sizes: str, count: int) -> str:
    """The tables with what they were measured on, for reports/device/x86-vs-arm64.md."""
    x86_cpu = next((row["x86"]["cpu"] for row in rows if row.get("x86")), {"model": "?", "isa_flags": []})
    return (f"# The same bundles on x86 and on Arm64 (`make arm64-check`, {time.strftime('%Y-%m-%d')})\n\n"
            f"Each bundle: {count} centre crops of {sizes} from `../shared/data/heavy-rain-sample5`, reference outputs "
            "from the shipped FP32 weights in PyTorch, the gates of the artifact's precision. x86: this "
            f"{x86_cpu.get('logical_cores', '?')}-core {x86_cpu['model']} ({', '.join(x86_cpu['isa_flags'])}) with the "
            "project's runtimes. Arm64: the aarch64 wheels of the runtimes in a Debian arm64 root under qemu-user, "
            "one column per emulated CPU (`bundle/arm64_views.py`): verdicts come from the Arm builds' kernels for "
            "that CPU class as qemu executes them; latency means nothing. Each cell: the verdict, the minimum output "
            "PSNR against the golden outputs, the task-PSNR change, and the two machines' outputs compared "
            "directly.\n\n" + table(rows, views) + "\n\n" + views_table(rows, views) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", type=Path, default=Path("/var/cache/treefuse/arm64-root"))
    parser.add_argument("--work", type=Path, default=REPO / "outputs" / "arm64-check")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "device")
    parser.add_argument("--sizes", default="64x64")
    parser.add_argument("--count", type=int, default=3)
    args = parser.parse_args(argv)
    if not IMAGES.is_dir():
        raise SystemExit(f"arm64-check: error: {IMAGES} is missing; it needs the shared heavy-rain sample")
    args.work.mkdir(parents=True, exist_ok=True)
    log = args.work / "arm64-check.log"
    bundles = pack_all(make_artifacts(args.work, log), args.work, args.sizes, args.count, log)
    runnable = {name: b for name, b in bundles.items() if isinstance(b, Path)}
    runs: dict[str, dict[str, Any]] = {name: {} if name in runnable else {"skipped": b} for name, b in bundles.items()}
    for label in ("x86", *(v.name for v in VIEWS)):
        for folder in (args.out / label, args.work / "outputs" / label):
            shutil.rmtree(folder, ignore_errors=True)  # a stale result must not stand for this run
            folder.mkdir(parents=True)
    for name, bundle in runnable.items():
        runs[name].update(zip(("x86_exit", "x86_wall_s", "x86_error"),
                              run_x86(bundle, args.out / "x86", args.work / "outputs" / "x86", log)))
        shutil.rmtree(args.root / "work" / "bundles" / name, ignore_errors=True)
        shutil.copytree(bundle, args.root / "work" / "bundles" / name)
    from treefuse.progress import progress_bar

    mount_for_chroot(args.root)
    bar = progress_bar(None, total=len(VIEWS) * len(runnable), desc="arm64-check runs", unit="run")  # minutes each
    try:
        for view in VIEWS:
            show_cpu(args.root, view, f"/work/bundles/{next(iter(runnable))}")
            for name, bundle in runnable.items():
                code, seconds, error = run_arm64(bundle, args.root, view, args.out / view.name,
                                                 args.work / "outputs" / view.name, log)
                runs[name].update({f"{view.name}_exit": code, f"{view.name}_wall_s": round(seconds, 1),
                                   f"{view.name}_error": error})
                bar.update(1)
                bar.write(f"{view.name} {name}: exit {code} ({seconds:.0f} s) {error}", file=sys.stdout)
    finally:
        bar.close()
        unmount_chroot(args.root)
    rows = [{**compare(name, args.out, args.work, VIEWS), "runs": runs[name]} for name in bundles]
    write_json_atomic(args.out / "x86-vs-arm64.json", {"rows": rows, "sizes": args.sizes, "count": args.count,
                                                       "views": [v.__dict__ for v in VIEWS]})
    (args.out / "x86-vs-arm64.md").write_text(page(rows, VIEWS, args.sizes, args.count))
    print(table(rows, VIEWS))
    report_and_verify(args.out, list(runnable.values()), log)
    return 0


def report_and_verify(out: Path, bundles: list[Path], log: Path) -> None:
    """One report over both machines' results, and every result checked against its bundle (verify.txt)."""
    results = [str(p) for label in ("x86", *(v.name for v in VIEWS)) for p in sorted((out / label).glob("*.json"))]
    if not results:
        return
    note = ("Arm64 figures come from Arm's own runtime builds under qemu-user on this x86 host: their parity verdicts "
            "are Arm kernels' verdicts, their latency is marked emulated and means nothing. x86: the same bundles on "
            "the 2-core AMD EPYC (AVX2+FMA, no AVX-512/VNNI), shared with training.")
    treefuse("report", *results, "--out", str(out), "--note", note, log=log)
    done = subprocess.run([sys.executable, "-m", "treefuse", "report", "--verify", str(out / "report.md"), *results,
                           *[arg for b in bundles for arg in ("--bundle", str(b))]], capture_output=True, text=True,
                          cwd=REPO)
    (out / "verify.txt").write_text(f"$ treefuse report --verify reports/device/report.md reports/device/*/*.json "
                                    "--bundle outputs/arm64-check/bundles/...\n"
                                    f"{done.stdout}{done.stderr}exit {done.returncode}\n")


if __name__ == "__main__":
    sys.exit(main())
