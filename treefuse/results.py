"""Typed result records: what parity, bench, sweep and evaluate produce, save and read back.

Each record is made by the library (not assembled in the CLI), carries the `artifact`
record of every backend it ran (inside each backend's facts), the device fingerprint and
its provenance, and round-trips through JSON with a schema version. The report reads only
these records.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from treefuse.errors import TreefuseError
from treefuse.portable.records import SCHEMA_VERSION  # one version for treefuse and device bundles


@dataclass
class Result:
    """What every result record has: the machine it ran on and where it came from."""

    KIND: ClassVar[str] = ""
    COMMAND: ClassVar[str] = ""  # the command that makes it, named when an old file must be regenerated

    device: dict[str, Any]
    provenance: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.KIND, "schema_version": SCHEMA_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "result") -> "Result":
        """The record a JSON object holds; a file of another kind or a newer schema is refused in one line."""
        version = data.get("schema_version", 1)
        if data.get("kind") != cls.KIND:
            raise TreefuseError(f"{source} is a {data.get('kind')!r} result, not {cls.KIND!r}")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise TreefuseError(f"{source} has result schema {version!r}, newer than this treefuse reads "
                                f"({SCHEMA_VERSION}); upgrade treefuse or re-run `{cls.COMMAND}`")
        names = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls)
                    if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING}
        missing = sorted(required - set(data))
        if missing:
            raise TreefuseError(f"{source}: malformed {cls.KIND} result (missing {', '.join(missing)}); "
                                f"regenerate it with `{cls.COMMAND}`")
        return cls(**{key: value for key, value in data.items() if key in names})


@dataclass
class ParityResult(Result):
    """A candidate backend judged against a reference on a set of images."""

    KIND: ClassVar[str] = "treefuse-parity"
    COMMAND: ClassVar[str] = "treefuse parity"

    reference: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)
    passed: bool = False
    failures: list[str] = field(default_factory=list)
    gates: dict[str, Any] = field(default_factory=dict)
    output_psnr_db: dict[str, float] | None = None
    task: dict[str, float] | None = None
    worst_image: dict[str, Any] | None = None  # the largest task-PSNR drop (paired), else lowest output PSNR
    images: list[dict[str, Any]] = field(default_factory=list)
    non_finite_images: list[str] = field(default_factory=list)
    metric: dict[str, Any] = field(default_factory=dict)
    images_dir: str = ""


@dataclass
class BenchResult(Result):
    """Latency of several backends at one size, measured interleaved."""

    KIND: ClassVar[str] = "treefuse-bench"
    COMMAND: ClassVar[str] = "treefuse bench"

    size: list[int] = field(default_factory=list)
    batch: int = 1
    warmup: int = 0
    iters: int = 0
    backends: list[dict[str, Any]] = field(default_factory=list)  # runner facts + latency summary each


@dataclass
class SweepResult(Result):
    """Every backend at every size on one device, with parity against the first backend."""

    KIND: ClassVar[str] = "treefuse-sweep"
    COMMAND: ClassVar[str] = "treefuse sweep"

    format: str = "treefuse-sweep-v1"
    sizes: list[list[int]] = field(default_factory=list)
    warmup: int = 0
    iters: int = 0
    backends: list[dict[str, Any]] = field(default_factory=list)
    cells: list[dict[str, Any]] = field(default_factory=list)
    parity: list[dict[str, Any]] = field(default_factory=list)
    images_dir: str | None = None


@dataclass
class EvaluateResult(Result):
    """One backend's quality against ground truth on a paired folder."""

    KIND: ClassVar[str] = "treefuse-evaluate"
    COMMAND: ClassVar[str] = "treefuse evaluate"

    backend: dict[str, Any] = field(default_factory=dict)
    data: str = ""
    count: int = 0
    mean: dict[str, float] = field(default_factory=dict)
    images: list[dict[str, Any]] = field(default_factory=list)
    metric: dict[str, Any] = field(default_factory=dict)


@dataclass
class DiffResult(Result):
    """Two backends compared layer by layer on a set of images: where the candidate first goes wrong."""

    KIND: ClassVar[str] = "treefuse-diff"
    COMMAND: ClassVar[str] = "treefuse diff"

    reference: dict[str, Any] = field(default_factory=dict)
    candidate: dict[str, Any] = field(default_factory=dict)
    passed: bool = False  # the final output meets the candidate precision's output-PSNR gate
    failures: list[str] = field(default_factory=list)
    gates: dict[str, Any] = field(default_factory=dict)
    first_diverging_layer: str | None = None  # the first layer, in execution order, below the layer threshold
    layers: list[dict[str, Any]] = field(default_factory=list)  # per layer: worst PSNR and max abs error over images
    images: list[dict[str, Any]] = field(default_factory=list)
    unmatched: dict[str, list[str]] = field(default_factory=dict)  # layers only one side exposes
    exposure_effect: dict[str, float] = field(default_factory=dict)  # max |output change| from exposing layers
    crop: list[int] = field(default_factory=list)
    images_dir: str = ""


@dataclass
class ProfileResult(Result):
    """Where one backend's time goes, from its own profiler: per op type, per layer, per node."""

    KIND: ClassVar[str] = "treefuse-profile"
    COMMAND: ClassVar[str] = "treefuse profile"

    backend: dict[str, Any] = field(default_factory=dict)
    size: list[int] = field(default_factory=list)
    runs: int = 0
    profiler: str = ""
    total_ms: float = 0.0  # per run, the sum of every profiled op
    groups_ms: dict[str, float] = field(default_factory=dict)  # compute / quantize / dequantize / layout / other
    op_types: list[dict[str, Any]] = field(default_factory=list)
    layers: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)


RESULT_TYPES: dict[str, type[Result]] = {cls.KIND: cls for cls in (ParityResult, BenchResult, SweepResult,
                                                                    EvaluateResult, DiffResult, ProfileResult)}


def result_from_json(data: Any, source: str = "result") -> Result:
    """Whichever typed record a loaded JSON object is."""
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in RESULT_TYPES:
        raise TreefuseError(f"{source} is not a treefuse result (kind {kind!r}); "
                            f"expected one of {', '.join(RESULT_TYPES)}")
    return RESULT_TYPES[kind].from_json(data, source)
