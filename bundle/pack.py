"""`treefuse pack`: an artifact, golden crops, FP32 PyTorch reference outputs and gates in one hashed folder.

The folder runs anywhere with Python, numpy and the format's runtime: `python BUNDLE/run.py`.
Arrays are .npz (loaded with allow_pickle=False); every file's sha256 is in manifest.json.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.files import COMPANION_MARK, atomic_path, check_output_path, sha256_file
from treefuse.gates import gates_for
from treefuse.images import from_batch, read_image, to_batch
from treefuse.formats import bundle_kinds
from treefuse.portable import manifest as bundle_manifest
from treefuse.portable.engines import engine_module
from treefuse.provenance import provenance

RUNNER_PACKAGE = "bundle_runner"
LAUNCHER = '''#!/usr/bin/env python3
"""Run this treefuse device bundle (`python run.py --help`): needs Python 3.8+, numpy and the format's runtime."""
import sys
from pathlib import Path

sys.dont_write_bytecode = True  # the bundle stays byte for byte as packed
ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
from bundle_runner.device_run import main  # noqa: E402

sys.exit(main(ROOT))
'''
README = """treefuse device bundle: {artifact} ({kind}, {precision})
Run it on the device:  python run.py --json result.json   (needs Python 3.8+, numpy, {runtime})
Bring result.json and result.bench.json back; `treefuse report --verify result.json --bundle THIS_FOLDER`.
Exit codes: 0 passed, 1 a quality gate failed, 2 bad or tampered bundle (or runtime missing), 3 a bug.
"""

@dataclass(frozen=True)
class PackRequest:
    """What to pack: the artifact, golden images and crop sizes, and the FP32 reference weights."""

    candidate: str  # KIND:PATH
    images: Path
    out: Path
    sizes: tuple[tuple[int, int] | None, ...] = ((96, 96),)  # (H, W); None: the whole image
    reference: str | None = None  # torch:WEIGHTS; default: the weights the artifact was made from, if shipped
    count: int | None = None
    test_y_channel: bool = False
    bench_size: tuple[int, int] | None = None  # (H, W) latency is timed at; None: the frames' own size


@dataclass(frozen=True)
class PackedBundle:
    """What was written."""

    path: Path
    files: int
    size_bytes: int
    manifest_sha256: str
    samples: int


def is_bundle(folder: Path) -> bool:
    """True for a folder `treefuse pack` wrote (so re-packing may replace it)."""
    try:
        return bundle_manifest.read_manifest(folder) is not None
    except bundle_manifest.BundleError:
        return False


def pack(request: PackRequest) -> PackedBundle:
    """Write the bundle atomically: the old one, or the new one whole, at any instant."""
    from treefuse.runtimes.backends.registry import make_runner
    from treefuse.runtimes.measurements.parity import image_set

    check_output_path(request.out, directory=True, same_kind=is_bundle)  # before minutes of work
    with make_runner(request.candidate) as candidate:
        if candidate.kind not in bundle_kinds():
            raise TreefuseError(f"pack takes {', '.join(bundle_kinds())} artifacts (runtimes that run without "
                                f"treefuse), not {candidate.kind!r}")
        facts = candidate.describe()
        limits = candidate.input_constraints()
    companions = companion_files(facts["kind"], Path(facts["path"]))  # before minutes of work
    with make_runner(_reference_spec(request.reference, facts["artifact"])) as reference:
        pairs = image_set(request.images)[: request.count or None]
        samples = _golden_samples(pairs, request.sizes, reference, limits)
        reference_facts = reference.describe()
    bench_hw = request.bench_size or _frame_size(pairs, limits)
    with atomic_path(request.out, directory=True, same_kind=is_bundle) as staged:
        files = _write_contents(staged, request, facts, reference_facts, samples, bench_hw, companions)
        manifest = bundle_manifest.write_manifest(staged, files, {"treefuse_provenance": provenance()})
    total = sum(p.stat().st_size for p in request.out.rglob("*") if p.is_file())
    return PackedBundle(request.out, len(manifest["files"]) + 1, total,
                        bundle_manifest.manifest_sha256(request.out), len(samples))


def _reference_spec(reference: str | None, artifact: dict[str, Any]) -> str:
    """The FP32 PyTorch weights the artifact was made from; refuses other weights."""
    from treefuse.checkpoint import DEFAULT_WEIGHTS

    source = artifact.get("source_sha256")
    if reference is None:
        if source and DEFAULT_WEIGHTS.is_file() and sha256_file(DEFAULT_WEIGHTS) != source:
            raise TreefuseError(f"the artifact was made from weights {source[:16]}, not the shipped weights; "
                                "pass --ref torch:THOSE_WEIGHTS.safetensors")
        return f"torch:{DEFAULT_WEIGHTS}"
    kind, _, path = reference.partition(":")
    if kind != "torch":
        raise TreefuseError(f"--ref {reference!r} must be torch:WEIGHTS (the FP32 PyTorch reference)")
    if source and Path(path).is_file() and sha256_file(path) != source:
        raise TreefuseError(f"--ref {path} is not the weights the artifact was made from (sha256 {source[:16]}); "
                            "pass those weights")
    return reference


Sample = dict[str, Any]


def _golden_samples(pairs: list[tuple[Path, Path | None]], sizes: tuple[tuple[int, int] | None, ...],
                    reference: Any, limits: dict[str, Any]) -> list[Sample]:
    samples = []
    for rainy_path, clean_path in pairs:
        rainy, clean = read_image(rainy_path), None if clean_path is None else read_image(clean_path)
        for size in sizes:
            crop = _center_crop(rainy, size, rainy_path)
            _check_limits(crop.shape[:2], limits, rainy_path)
            output = from_batch(reference.infer(to_batch(crop)))
            if not np.isfinite(output).all():
                raise TreefuseError(f"the reference produced NaN or Inf on {rainy_path}; use FP32 weights")
            name = f"{rainy_path.name}@{crop.shape[0]}x{crop.shape[1]}"
            samples.append({"name": name, "source": str(rainy_path), "size": list(crop.shape[:2]), "input": crop,
                            "clean": None if clean is None else _center_crop(clean, size, clean_path),
                            "reference": output.astype(np.float32)})
    return samples


def _center_crop(image: np.ndarray, size: tuple[int, int] | None, path: Path) -> np.ndarray:
    if size is None:
        return image
    height, width = size
    if image.shape[0] < height or image.shape[1] < width:
        raise TreefuseError(f"{path} is {image.shape[0]}x{image.shape[1]} (HxW), smaller than the crop {height}x{width}; "
                            "choose smaller --sizes")
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return np.ascontiguousarray(image[top:top + height, left:left + width])


def _check_limits(hw: tuple[int, int], limits: dict[str, Any], path: Path) -> None:
    low, high = limits.get("min_hw"), limits.get("max_hw")
    if (low and (hw[0] < low[0] or hw[1] < low[1])) or (high and (hw[0] > high[0] or hw[1] > high[1])):
        raise TreefuseError(f"a {hw[0]}x{hw[1]} (HxW) crop of {path} is outside the artifact's input range {low} .. {high}; "
                            "choose --sizes inside it or re-export with a wider range")


def _frame_size(pairs: list[tuple[Path, Path | None]], limits: dict[str, Any]) -> tuple[int, int]:
    """The largest frame of the images (a camera times whole frames, not golden crops), within the artifact's range."""
    from PIL import Image

    sizes = []
    for rainy_path, _ in pairs:
        with Image.open(rainy_path) as image:
            sizes.append((image.height, image.width))
    height, width = max(sizes, key=lambda hw: hw[0] * hw[1])
    high = limits.get("max_hw") or (height, width)
    return min(height, high[0]), min(width, high[1])


def _compact(image: np.ndarray) -> np.ndarray:
    """uint8 when the image is exactly 8-bit (the runner divides by 255 as treefuse does), else float32."""
    as_uint8 = np.round(image * 255.0).astype(np.uint8)
    return as_uint8 if np.array_equal(as_uint8.astype(np.float32) / 255.0, image) else image.astype(np.float32)


def companion_files(kind: str, artifact: Path) -> list[Path]:
    """Files or folders the format's engine reads beside the artifact (ExecuTorch's layers program, RKNN's
    simulator recipe), where it names any."""
    named = getattr(engine_module(kind), "companion_files", None)
    try:
        return named(artifact) if named else []
    except bundle_manifest.BundleError as exc:
        raise TreefuseError(str(exc)) from None


def _write_contents(root: Path, request: PackRequest, facts: dict[str, Any], reference: dict[str, Any],
                    samples: list[Sample], bench_hw: tuple[int, int], companions: list[Path]) -> list[str]:
    """Every file but the manifest; returns their bundle-relative names."""
    from treefuse.sidecar import sidecar_path

    artifact = Path(facts["path"])
    (root / "artifact").mkdir()
    names = [f"artifact/{artifact.name}"]
    shutil.copyfile(artifact, root / names[0])
    if sidecar_path(artifact).is_file():  # ExecuTorch and LiteRT keep their record beside the file
        names.append(f"artifact/{sidecar_path(artifact).name}")
        shutil.copyfile(sidecar_path(artifact), root / names[-1])
    for companion in companions:
        names += _copy_companion(companion, root / "artifact", root)
    arrays: dict[str, np.ndarray] = {}
    for index, sample in enumerate(samples):
        key = f"{index:03d}"
        arrays[f"input_{key}"], arrays[f"reference_{key}"] = _compact(sample["input"]), sample["reference"]
        if sample["clean"] is not None:
            arrays[f"clean_{key}"] = _compact(sample["clean"])
        sample["key"] = key
    np.savez_compressed(root / "golden.npz", **arrays)
    record = {**facts["artifact"], "path": names[0]}
    bundle = {"format": bundle_manifest.FORMAT, "kind": facts["kind"], "artifact_file": names[0],
              "precision": facts["precision"], "test_y_channel": request.test_y_channel, "bench_size": list(bench_hw),
              "reference": reference, "images": str(request.images),
              "samples": [{k: s[k] for k in ("key", "name", "source", "size")} for s in samples]}
    texts = {"bundle.json": bundle, "artifact.json": record, "gates.json": gates_for(facts["precision"]).to_json()}
    for name, value in texts.items():
        (root / name).write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    (root / "run.py").write_text(LAUNCHER)
    (root / "README.txt").write_text(README.format(artifact=artifact.name, kind=facts["kind"],
                                                   precision=facts["precision"],
                                                   runtime=engine_module(facts["kind"]).NEEDS))
    (root / RUNNER_PACKAGE).mkdir()
    runner_files = portable_runner_files()
    for source in runner_files:
        (root / RUNNER_PACKAGE / source.name).write_bytes(source.read_bytes())
    # the format's own torch-free engine, found by the runner as KIND_engine.py, and the modules it imports
    names.append(f"{RUNNER_PACKAGE}/{facts['kind']}_engine.py")
    (root / names[-1]).write_bytes(bundle_engine_file(facts["kind"]).read_bytes())
    for module in engine_runner_modules(facts["kind"], {f.name for f in runner_files} | {Path(names[-1]).name}):
        names.append(f"{RUNNER_PACKAGE}/{module.name}")
        (root / names[-1]).write_bytes(module.read_bytes())
    return [*names, "golden.npz", *texts, "run.py", "README.txt",
            *(f"{RUNNER_PACKAGE}/{source.name}" for source in runner_files)]


def _copy_companion(companion: Path, folder: Path, root: Path) -> list[str]:
    """Copy a companion file, or a folder with everything under it, into `folder`; returns the bundle-relative names."""
    target = folder / companion.name
    if companion.is_dir():
        shutil.copytree(companion, target, ignore=shutil.ignore_patterns(COMPANION_MARK))  # export's mark, not content
        return sorted(path.relative_to(root).as_posix() for path in target.rglob("*") if path.is_file())
    shutil.copyfile(companion, target)
    return [target.relative_to(root).as_posix()]


def engine_runner_modules(kind: str, taken: set[str]) -> list[Path]:
    """Modules the format's engine imports from beside itself (its `runner_modules()`), where it names any."""
    named = getattr(engine_module(kind), "runner_modules", None)
    modules = named() if named else []
    clash = sorted({module.name for module in modules} & taken)
    if clash:  # a format's module would replace the runner's own: a bug in the format's folder
        raise RuntimeError(f"the {kind} engine's runner modules {clash} clash with the bundle runner's files")
    return modules


def bundle_engine_file(kind: str) -> Path:
    """The file of the engine the format's row names for bundles (a wheel or a source tree alike)."""
    return Path(engine_module(kind).__file__)


def portable_runner_files() -> list[Any]:
    """The torch-free runner's modules, found where treefuse is installed (a wheel or a source tree)."""
    files = sorted((f for f in resources.files("treefuse.portable").iterdir() if f.name.endswith(".py")),
                   key=lambda f: f.name)
    if not any(f.name == "device_run.py" for f in files):  # a broken install would pack a bundle that cannot run
        raise RuntimeError(f"treefuse.portable holds no device_run.py ({[f.name for f in files]}): reinstall treefuse")
    return files
