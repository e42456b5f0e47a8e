"""Result files (sweep, bench, parity) read, checked and flattened into measurements a report can merge."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from treefuse.errors import TreefuseError, one_line
from treefuse.files import sha256_file
from treefuse.results import BenchResult, EvaluateResult, ParityResult, Result, SweepResult, result_from_json

SWEEP_FORMATS = ("treefuse-sweep-v1",)
UNSTABLE_P90_OVER_P50 = 1.5
KINDS = ("treefuse-sweep", "treefuse-bench", "treefuse-parity", "treefuse-evaluate")


@dataclass(frozen=True)
class Latency:
    """One backend at one size on one device."""

    device: str
    backend: str
    size: tuple[int, int]
    p50_ms: float
    p90_ms: float
    throughput_img_per_s: float
    peak_rss_mib: float | None
    peak_rss_delta_mib: float | None
    cuda_peak_mib: float | None
    source: str
    timing: str = "device"  # "evaluator" when not the device's own runtime (Core ML on Linux): no speed claims
    created_utc: str = ""
    memory_method: str | None = None  # how peak_rss_mib was read (one process per backend, or shared)

    @property
    def unstable(self) -> bool:
        """p90 / p50 above 1.5: the machine was too noisy for this figure to mean much."""
        return self.p90_ms > UNSTABLE_P90_OVER_P50 * self.p50_ms


@dataclass(frozen=True)
class Quality:
    """Parity of one backend against a reference on one device, with task PSNR when ground truth was there."""

    device: str
    backend: str
    reference: str
    output_psnr_min_db: float
    output_psnr_mean_db: float
    task_psnr_db: float | None
    reference_task_psnr_db: float | None
    passed: bool
    source: str
    gates: dict[str, Any] | None = None  # the thresholds behind `passed` (None in 0.1 results)
    created_utc: str = ""
    failures: tuple[str, ...] = ()  # why it failed, in the gate's words
    worst_task_delta_db: float | None = None  # the image that lost most task PSNR (None before that field)
    worst_image: str | None = None


@dataclass(frozen=True)
class Evaluation:
    """One backend's quality against ground truth on a paired folder, on one device."""

    device: str
    backend: str
    data: str
    count: int
    psnr_y_db: float
    ssim_y: float
    input_psnr_y_db: float | None
    source: str
    created_utc: str = ""


@dataclass
class ResultFile:
    """A loaded result file: its path, hash, device label and what it measured."""

    path: Path
    sha256: str
    data: dict[str, Any]
    device: str
    artifacts: list[dict[str, Any]] = field(default_factory=list)
    latencies: list[Latency] = field(default_factory=list)
    qualities: list[Quality] = field(default_factory=list)
    evaluations: list[Evaluation] = field(default_factory=list)
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # report label -> the runner's record (artifact)


def load_result(path: str | Path) -> ResultFile:
    """Read and check one result file; anything not a treefuse sweep/bench/parity result is refused."""
    path = Path(path)
    if not path.is_file():
        raise TreefuseError(f"result file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TreefuseError(f"{path} is not JSON ({one_line(exc)}); pass treefuse sweep/bench/parity results") from None
    record = result_from_json(data, str(path))
    kind = record.KIND
    if kind not in KINDS:
        raise TreefuseError(f"{path} is a {kind} result, which a report does not take yet; "
                            f"pass {', '.join(KINDS)} results")
    if isinstance(record, SweepResult) and record.format not in SWEEP_FORMATS:
        raise TreefuseError(f"{path} is a sweep of format {record.format!r}; this treefuse reads {SWEEP_FORMATS}; "
                            "re-run `treefuse sweep` with this version")
    try:
        return _flatten(path, record)
    except (KeyError, TypeError, ValueError) as exc:
        raise TreefuseError(f"{path}: malformed {kind} result (missing or bad field {exc}); re-run it with this treefuse") from None


def device_label(device: dict[str, Any]) -> str:
    """A short human name for the machine a result came from."""
    gpus = device.get("gpus") or []
    if gpus:
        return gpus[0]["name"]
    cpu = device.get("cpu", {})
    flags = set(cpu.get("isa_flags", []))
    isa = "AMX" if "amx_bf16" in flags else "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else \
        "+".join(f for f in ("asimd", "asimddp", "i8mm", "sve") if f in flags) or "base ISA"  # Arm: NEON, dot product
    return f"{cpu.get('model', 'unknown CPU')}, {cpu.get('logical_cores', '?')} cores, {isa}"


def backend_label(facts: dict[str, Any]) -> str:
    """'kind precision [device]' from a runner's describe() record."""
    label = f"{facts['kind']} {facts.get('precision', '?')}"
    device = str(facts.get("device", "cpu")).lower()
    providers = facts.get("providers") or []
    if device.startswith("cuda") or any("CUDA" in p for p in providers):
        label += " cuda"
    for option in ("compile", "channels_last", "cuda_graph"):
        if facts.get(option):
            label += f" {option.replace('_', '-')}"
    return label


def _flatten(path: Path, record: Result) -> ResultFile:
    device = device_label(record.device)
    created = str((record.provenance or {}).get("created_utc", ""))
    result = ResultFile(path=path, sha256=sha256_file(path), data=record.to_json(), device=device)
    if isinstance(record, SweepResult):
        labels = _unique_labels(record.backends)
        facts_of = {b.get("label", f"{b['kind']}:{b['path']}"): b for b in record.backends}
        result.artifacts = list(record.backends)
        result.latencies = [_latency(device, labels[c["backend"]], c, str(path), facts_of[c["backend"]], created)
                            for c in record.cells]
        result.qualities = [_quality(device, labels[r["backend"]], labels[r["reference"]], r, str(path), created)
                            for r in record.parity]
        result.facts = {labels[label]: facts for label, facts in facts_of.items()}
    elif isinstance(record, BenchResult):
        result.artifacts = list(record.backends)
        cells = [{**b, "size": record.size} for b in record.backends]
        result.latencies = [_latency(device, backend_label(c), c, str(path), c, created) for c in cells]
        result.facts = {backend_label(b): b for b in record.backends}
    elif isinstance(record, ParityResult):
        result.artifacts = [record.reference, record.candidate]
        result.qualities = [_quality(device, backend_label(record.candidate), backend_label(record.reference),
                                     dataclasses.asdict(record), str(path), created)]
        result.facts = {backend_label(record.candidate): record.candidate, backend_label(record.reference): record.reference}
    elif isinstance(record, EvaluateResult):
        result.artifacts = [record.backend]
        mean = record.mean
        result.evaluations = [Evaluation(device, backend_label(record.backend), record.data, record.count,
                                         float(mean["psnr_y_db"]), float(mean["ssim_y"]), mean.get("input_psnr_y_db"),
                                         str(path), created)]
    return result


def _unique_labels(backends: list[dict[str, Any]]) -> dict[str, str]:
    """Sweep label -> report label; two backends that read alike (same kind and precision) get their file name added."""
    short = [backend_label(b) for b in backends]
    return {b.get("label", f"{b['kind']}:{b['path']}"): name if short.count(name) == 1 else f"{name} ({Path(b['path']).name})"
            for b, name in zip(backends, short)}


def timing_kind(facts: dict[str, Any]) -> str:
    """'evaluator' for a stand-in of the device runtime (Core ML on Linux), 'emulated' for a CPU emulator
    (a bundle run under qemu), 'simulated' for a simulator of the device (RKNN's x86 one of the NPU), else
    'device'; only 'device' figures enter ratios and plots."""
    if facts.get("evaluator") == "mil" or facts.get("timing") == "evaluator":
        return "evaluator"
    if facts.get("simulated") or facts.get("timing") == "simulated":
        return "simulated"
    return "emulated" if facts.get("timing") == "emulated" else "device"


def _latency(device: str, backend: str, cell: dict[str, Any], source: str, facts: dict[str, Any],
             created: str) -> Latency:
    memory = cell.get("memory", {})
    return Latency(device, backend, (int(cell["size"][0]), int(cell["size"][1])), float(cell["latency_ms"]["p50"]),
                   float(cell["latency_ms"]["p90"]), float(cell["throughput_img_per_s"]),
                   memory.get("peak_rss_mib"), memory.get("peak_rss_delta_mib"),
                   memory.get("cuda_peak_allocated_mib"), source, timing_kind(facts), created, memory.get("rss_method"))


def _quality(device: str, backend: str, reference: str, row: dict[str, Any], source: str, created: str) -> Quality:
    task, worst = row.get("task") or {}, row.get("worst_image") or {}
    output = row.get("output_psnr_db") or {"min": float("nan"), "mean": float("nan")}  # None: no finite output at all
    return Quality(device, backend, reference, float(output["min"]), float(output["mean"]),
                   task.get("cand_psnr_db"), task.get("ref_psnr_db"), bool(row["passed"]), source,
                   row.get("gates"), created, tuple(row.get("failures") or ()), worst.get("task_delta_db"),
                   worst.get("image"))
