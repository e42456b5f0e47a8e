"""`python BUNDLE/run.py`: check the bundle, judge the artifact against its golden outputs, time it.

Exit codes as treefuse's: 0 passed; 1 a gate failed; 2 a bad, tampered or incomplete bundle
or a missing runtime (one line on stderr); 3 a bug (the first line says so, then the traceback).
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from . import fingerprint, quality, records, timing
from .engines import Engine
from .manifest import BundleError, inside, manifest_sha256, verify_bundle

PROG = "run.py"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message}; see `python run.py --help`\n")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = OneLineParser(prog=PROG, description="Run a treefuse device bundle: parity against its golden "
                           "outputs and latency, on this device's own runtime (no torch, no treefuse needed).",
                           epilog="exit codes: 0 passed; 1 a quality gate failed; 2 bad or tampered bundle, or the "
                           "runtime missing (one line on stderr); 3 a bug")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the parity record to OUT and the bench "
                        "record beside it (OUT with .bench.json); both load in `treefuse report`")
    parser.add_argument("--iters", type=int, default=10, help="timed runs (default 10; use 1-2 under emulation)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs first (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="runtime threads (default: the runtime's choice)")
    parser.add_argument("--emulated", action="store_true", help="say this device is emulated (qemu): its latency "
                        "is then labelled so and kept out of ratios")
    parser.add_argument("--save-outputs", type=Path, metavar="NPZ", help="also save this device's outputs (.npz), "
                        "to compare two devices output by output")
    parser.add_argument("--layers", type=Path, metavar="NPZ", help="also save every layer's output on centre crops "
                        "of the golden inputs (.npz): at home, `treefuse diff --ref torch:W --cand-layers NPZ` names "
                        "the first layer this device gets wrong (ONNX bundles, with the onnx package; ExecuTorch bundles packed with "
                        "their layers program m.layers.pte)")
    parser.add_argument("--layers-crop", type=_size, default=(64, 64), metavar="HxW",
                        help="centre crop of each golden input for --layers (default 64x64: small files, fast under "
                        "emulation)")
    args = parser.parse_args(argv)
    if args.iters < 1 or args.warmup < 0 or (args.threads is not None and args.threads < 1):
        parser.error("--iters and --threads must be at least 1, --warmup at least 0")
    return args


def _size(text: str) -> tuple[int, int]:
    height, _, width = text.lower().partition("x")
    if not (height.isdigit() and width.isdigit() and int(height) > 0 and int(width) > 0):
        raise argparse.ArgumentTypeError(f"size {text!r} must be HxW, e.g. 64x64")
    return int(height), int(width)


def probe_failed(note: str) -> bool:
    """A runtime's message that it could not read the CPU (cpuinfo), or that XNNPACK refused to start."""
    return ("cpuinfo" in note and "fail" in note.lower()) or "XNNPACK status" in note


def read_json(root: Path, name: str) -> dict[str, Any]:
    try:
        value = json.loads(inside(root, name).read_text())
    except (OSError, ValueError):
        raise BundleError(f"bundle file {name} is missing or damaged; copy the bundle again or re-pack it") from None
    if not isinstance(value, dict):
        raise BundleError(f"bundle file {name} is not a JSON object; re-pack the bundle")
    return value


def check_gates(gates: dict[str, Any]) -> None:
    """The bundle's thresholds must be finite numbers (a NaN would pass everything).

    A bundle packed before the worst-image bound has none and is judged on the mean task drop alone.
    """
    keys = ("min_output_psnr_db", "max_task_drop_db") + \
        (("max_worst_task_drop_db",) if gates.get("max_worst_task_drop_db") is not None else ())
    for key in keys:
        value = gates.get(key)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not np.isfinite(value):
            raise BundleError(f"gates.json: {key} is {value!r}, not a finite number; re-pack the bundle")


def load_samples(root: Path, bundle: dict[str, Any]) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None]]:
    """(name, rainy, reference output, clean or None) per golden sample, HxWx3 float32; no pickles."""
    try:
        with np.load(inside(root, "golden.npz"), allow_pickle=False) as golden:
            arrays = {key: golden[key] for key in golden.files}
        samples = []
        for sample in bundle["samples"]:
            key = sample["key"]
            rainy = arrays[f"input_{key}"]
            rainy = rainy.astype(np.float32) / 255.0 if rainy.dtype == np.uint8 else rainy.astype(np.float32)
            clean = arrays.get(f"clean_{key}")
            if clean is not None:
                clean = clean.astype(np.float32) / 255.0 if clean.dtype == np.uint8 else clean.astype(np.float32)
            samples.append((str(sample["name"]), rainy, arrays[f"reference_{key}"].astype(np.float32), clean))
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        raise BundleError(f"golden.npz does not hold the samples bundle.json names ({type(exc).__name__}); "
                          "re-pack the bundle") from None
    return samples


def to_batch(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None], dtype=np.float32)


def run_parity(engine: Engine, samples: list, test_y_channel: bool) -> tuple[list[dict[str, Any]], dict[str, np.ndarray]]:
    rows, outputs = [], {}
    for name, rainy, reference, clean in samples:
        try:
            candidate = np.ascontiguousarray(engine.infer(to_batch(rainy))[0].transpose(1, 2, 0))
        except BundleError:
            raise
        except Exception as exc:  # the runtime's untyped errors: this artifact cannot run this input here
            raise BundleError(f"{engine.runtime} failed on golden input {name} "
                              f"({' '.join(str(exc).split())[:200]}); the artifact does not run on this runtime") from None
        if candidate.shape != reference.shape:
            raise BundleError(f"{engine.path.name} turned {name} into shape {candidate.shape}, not "
                              f"{reference.shape}; the bundle's artifact is not a deraining model")
        outputs[name] = candidate
        rows.append(quality.parity_row(name, candidate, reference, clean, test_y_channel))
    return rows, outputs


def run_bench(engine: Engine, size: list[int], warmup: int, iters: int) -> dict[str, Any]:
    batch = np.random.default_rng(0).random((1, 3, int(size[0]), int(size[1])), dtype=np.float32)
    for _ in range(warmup):
        engine.infer(batch)
    seconds = []
    for _ in range(iters):
        start = time.perf_counter()
        engine.infer(batch)
        seconds.append(time.perf_counter() - start)
    return timing.latency_summary(seconds, 1)


def main(root: Path, argv: list[str] | None = None) -> int:
    try:
        return _run(root, parse_args(argv))
    except BundleError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: error: interrupted; nothing was written", file=sys.stderr)
        return 2
    except Exception:  # a bug: say so first, then the traceback
        print(f"{PROG}: internal error (a bug in the bundle runner; please report it with the traceback below)",
              file=sys.stderr)
        traceback.print_exc()
        return 3


def _run(root: Path, args: argparse.Namespace) -> int:
    started = time.perf_counter()
    manifest = verify_bundle(root)
    bundle, gates, artifact = read_json(root, "bundle.json"), read_json(root, "gates.json"), read_json(root, "artifact.json")
    try:
        kind, artifact_file, y = bundle["kind"], bundle["artifact_file"], bool(bundle["test_y_channel"])
        bench_size = list(bundle["bench_size"])
    except (KeyError, TypeError):
        raise BundleError("bundle.json lacks kind, artifact_file, test_y_channel or bench_size; re-pack the bundle") from None
    check_gates(gates)
    samples = load_samples(root, bundle)
    artifact_path = inside(root, artifact_file)
    engine = Engine(kind, artifact_path, args.threads)
    rows, outputs = run_parity(engine, samples, y)
    judged = quality.judge_rows(rows, gates, y)
    latency = run_bench(engine, bench_size, args.warmup, args.iters)
    device = fingerprint.device_facts(args.threads, {"numpy": np.__version__, **_runtime_version(engine.runtime)},
                                      args.emulated)
    device["runtime_notes"] = sorted(set(engine.notes))[:20]  # e.g. `cpuinfo_initialize failed` under emulation
    device["runtime_saw_cpu_features"] = not any(probe_failed(note) for note in engine.notes)
    if engine.simulated:
        device["simulator"] = engine.simulated
    bundle_ref = {"name": root.resolve().name, "manifest_sha256": manifest_sha256(root), "format": manifest["format"]}
    candidate = {"kind": kind, "spec": f"{kind}:{root.resolve().name}/{artifact_file}",
                 "path": f"{root.resolve().name}/{artifact_file}", "sha256": artifact.get("sha256"),
                 "precision": artifact.get("precision"), "backend": engine.runtime, "artifact": artifact,
                 "timing": "emulated" if device["emulated"] else "simulated" if engine.simulated else "device"}
    if engine.simulated:  # as the desktop simulator runner records it
        candidate.update(simulated=True, latency_note=f"{engine.simulated}: its latency is not the device's")
    provenance = {"created_utc": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "bundle": bundle_ref,
                  "runner": "bundle run.py", "tool_versions": device["versions"]}
    parity = records.record(records.PARITY_KIND, device, provenance, reference=bundle.get("reference", {}),
                            candidate=candidate, images_dir=f"{root.resolve().name}/golden.npz", **judged)
    wall_s = time.perf_counter() - started
    bench = records.record(records.BENCH_KIND, device, {**provenance, "runner_wall_s": wall_s,
                                                        "runtime_s": engine.runtime_s,
                                                        "runner_overhead_s": wall_s - engine.runtime_s},
                           size=bench_size, batch=1, warmup=args.warmup, iters=args.iters,
                           backends=[{**candidate, **latency, "ratio_to_first_p50": 1.0}])
    try:
        if args.json:
            records.write_json(args.json, parity)
            records.write_json(bench_path(args.json), bench)
        if args.save_outputs:
            _save_outputs(args.save_outputs, outputs)
        if args.layers:
            _save_layers(args.layers, engine, samples, args.layers_crop, {"candidate": candidate, "device": device})
    except OSError as exc:  # a read-only or full disk, a folder where the file goes: the user's to fix
        raise BundleError(f"cannot write {exc.filename or args.json} ({exc.strerror}); choose a writable path") from None
    _print_summary(parity, latency, device, bench_size, engine.simulated)
    print(f"run.py's own time {wall_s - engine.runtime_s:.2f} s (manifest, judging, records) beside the runtime's "
          f"{engine.runtime_s:.2f} s")
    return 0 if judged["passed"] else 1


def bench_path(parity_path: Path) -> Path:
    """Where the bench record goes beside the parity record: OUT.json -> OUT.bench.json."""
    stem = parity_path.name[:-5] if parity_path.name.endswith(".json") else parity_path.name
    return parity_path.with_name(stem + ".bench.json")


def _runtime_version(runtime: str) -> dict[str, str]:
    """'package 1.2 and more words' -> {'package': '1.2'}; 'unknown' where no version follows the name."""
    name, _, rest = runtime.partition(" ")
    number = rest.split(" ", 1)[0]
    return {name: number if number[:1].isdigit() else "unknown"}


def _save_outputs(path: Path, outputs: dict[str, np.ndarray]) -> None:
    staged = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(staged, **{f"output_{i:03d}": outputs[name] for i, name in enumerate(outputs)},
                        names=np.array(list(outputs)))
    staged.replace(path)


def _save_layers(path: Path, engine: Engine, samples: list, crop: tuple[int, int], facts: dict[str, Any]) -> None:
    """Every layer of every golden input's centre crop, with the inputs and who ran them (JSON text, no pickles)."""
    arrays: dict[str, np.ndarray] = {}
    names = []
    for index, (name, rainy, _, _) in enumerate(samples):
        height, width = min(crop[0], rainy.shape[0]), min(crop[1], rainy.shape[1])
        top, left = (rainy.shape[0] - height) // 2, (rainy.shape[1] - width) // 2
        batch = to_batch(rainy[top:top + height, left:left + width])
        arrays[f"input/{index}"] = batch
        arrays.update({f"layers/{index}/{layer}": value for layer, value in engine.layers(batch).items()})
        names.append(name)
    meta = {"kind": "treefuse-layers", "images": names, "crop": list(crop), **facts}
    staged = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(staged, meta=np.array(json.dumps(records.infinities_as_text(meta))), **arrays)
    staged.replace(path)


def _print_summary(parity: dict[str, Any], latency: dict[str, Any], device: dict[str, Any], size: list[int],
                   simulated: str | None = None) -> None:
    cpu = device["cpu"]
    psnr = parity["output_psnr_db"] or {"min": float("nan"), "mean": float("nan")}
    task = parity.get("task") or {}
    verdict = "passed" if parity["passed"] else "FAILED: " + "; ".join(parity["failures"])
    print(f"{parity['candidate']['spec']} on {device['machine']} {cpu['model']} [{', '.join(cpu['isa_flags'])}] "
          f"({parity['candidate']['backend']}, Python {platform.python_version()})")
    print(f"parity vs golden: output PSNR min {psnr['min']:.2f} / mean {psnr['mean']:.2f} dB, task delta "
          f"{task.get('delta_db', float('nan')):+.3f} dB -> {verdict} ({parity['gates'].get('precision')} gates)")
    worst = parity.get("worst_image")
    if worst and "task_delta_db" in worst:
        print(f"worst image: {worst['image']}: task delta {worst['task_delta_db']:+.3f} dB, "
              f"output PSNR {worst['output_psnr_db']:.2f} dB vs golden")
    label = " (EMULATED: not a device figure)" if device["emulated"] else \
        f" (SIMULATOR latency: {simulated})" if simulated else ""
    print(f"latency at {size[0]}x{size[1]} (HxW): "
          f"p50 {latency['latency_ms']['p50']:.2f} ms, p90 {latency['latency_ms']['p90']:.2f} ms{label}")
