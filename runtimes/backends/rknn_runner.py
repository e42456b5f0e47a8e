"""RKNN runner: a .rknn judged on rknn-toolkit2's x86 simulator of the Rockchip NPU's arithmetic.

The simulator cannot run a loaded .rknn (the toolkit refuses: "use load_xxx & build"), so export
keeps beside `m.rknn` the recipe it was built from (`m.rknn.sim/`: the pinned ONNX model, or the
toolkit's quantized model and quantization.cfg), hashed in the sidecar; this runner rebuilds it in
a worker process in the toolkit's own venv (export/rknn/worker.py, `make install-rknn`) and feeds it
.npy files. Simulator latency is not NPU latency: results say so.
"""
from __future__ import annotations

import json
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from treefuse.errors import TreefuseError
from treefuse.files import sha256_file
from treefuse.runtimes.backends.base import Runner
from treefuse.sidecar import read_sidecar

TOOLKIT_ENV = "TREEFUSE_RKNN_PYTHON"
# Run by path, in the toolkit's venv (it imports nothing of treefuse): export/ sits two levels up in a source
# tree and in an installed wheel alike.
WORKER = Path(__file__).resolve().parents[2] / "export" / "rknn" / "worker.py"
SIMULATOR_NOTE = "rknn-toolkit2's x86 simulator: its latency is not the NPU's"
LAYERS_SHOWN = 8  # the layers accuracy_analysis blames most, copied into result files


def toolkit_python() -> str:
    """A Python that has rknn-toolkit2: $TREEFUSE_RKNN_PYTHON, or .venv-rknn beside the source tree or here."""
    from treefuse.side_venv import side_python

    python = side_python(".venv-rknn", TOOLKIT_ENV)
    if python is not None:
        return str(python)
    raise TreefuseError("rknn: rknn-toolkit2 is not installed; run `make install-rknn` (its own venv .venv-rknn: "
                        f"it pins numpy<=1.26.4 and onnx<=1.18) or set {TOOLKIT_ENV} to a Python that has it")


def toolkit_missing() -> str | None:
    """The format table's availability check: None when the toolkit's Python is found, else how to install it."""
    try:
        toolkit_python()
    except TreefuseError as exc:
        return str(exc)
    return None


def recipe_dir(artifact: str | Path) -> Path:
    """Where the simulator's recipe of `artifact` lives: `m.rknn` -> `m.rknn.sim/`."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".sim")


def worker_failure(code: int, stderr: str, platform: str, what: str) -> TreefuseError:
    """One line for a worker that failed (its own error line) or crashed (a signal), naming the platform."""
    if code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else f"signal {-code}"
        return TreefuseError(f"rknn: rknn-toolkit2 crashed ({name}) while {what} for {platform}; this toolkit "
                             "version cannot convert for it here (docs/rknn.md), choose another --platform")
    lines = [line for line in stderr.splitlines() if line.strip()]
    reason = lines[-1].removeprefix("treefuse: error: ").strip() if lines else f"exit {code}"
    return TreefuseError(f"rknn: {what} for {platform} failed ({reason[:300]})")


def run_worker(command: str, job: dict[str, Any], what: str) -> dict[str, Any]:
    """Run one worker job to its end; returns its facts, or one line naming what failed."""
    with tempfile.TemporaryDirectory(prefix="treefuse-rknn-") as tmp:
        job = {"log": str(Path(tmp) / "toolkit.log"), "facts": str(Path(tmp) / "facts.json"), **job}
        (Path(tmp) / "job.json").write_text(json.dumps(job))
        done = subprocess.run([toolkit_python(), str(WORKER), command, str(Path(tmp) / "job.json")],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if done.returncode != 0:
            raise worker_failure(done.returncode, done.stderr, job.get("platform", "?"), what)
        return json.loads(Path(job["facts"]).read_text())


def simulator_recipe(artifact: Path) -> dict[str, Any]:
    """The recipe the sidecar records for `artifact`, its files checked against their hashes."""
    record = (read_sidecar(artifact) or {}).get("provenance", {}).get("rknn")
    if not record:
        raise TreefuseError(f"rknn: {artifact} has no treefuse record (m.rknn.json); export it with "
                            "`treefuse export rknn`, which keeps what the simulator rebuilds from")
    folder = recipe_dir(artifact)
    for name, digest in record["recipe_sha256"].items():
        if not (folder / name).is_file() or sha256_file(folder / name) != digest:
            raise TreefuseError(f"rknn: {folder / name} is missing or changed since export; the simulator rebuilds "
                                f"from it: re-export {artifact.name}")
    return {**record, "recipe_dir": str(folder)}


class SimulatorWorker:
    """A worker process that rebuilds one recipe on the toolkit's simulator once, then runs batch after batch."""

    def __init__(self, recipe: dict[str, Any], what: str = "rebuilding the model on the simulator") -> None:
        self.platform = recipe.get("platform", "?")
        self.tmp = tempfile.TemporaryDirectory(prefix="treefuse-rknn-sim-")
        folder = Path(self.tmp.name)
        job = {"recipe_dir": recipe["recipe_dir"], "mode": recipe["mode"], "platform": recipe["platform"],
               "optimization_level": recipe.get("optimization_level", 3),
               "qdq_rewrites": recipe.get("qdq_rewrites", []), "log": str(folder / "toolkit.log")}
        (folder / "job.json").write_text(json.dumps(job))
        self.process: subprocess.Popen | None = subprocess.Popen(
            [toolkit_python(), str(WORKER), "serve", str(folder / "job.json")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._expect("ready", what)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Every output of the rebuilt model for `batch` (1..N x 3 x H x W at the compiled size), in graph order."""
        assert self.process is not None and self.process.stdin is not None
        source, target = Path(self.tmp.name) / "in.npy", Path(self.tmp.name) / "out.npz"
        np.save(source, np.ascontiguousarray(batch))
        try:
            self.process.stdin.write(f"{source} {target}\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the worker died: _expect says how
        self._expect("ok", f"running a {'x'.join(map(str, batch.shape))} input on the simulator")
        with np.load(target, allow_pickle=False) as saved:
            return [saved[f"arr_{index}"] for index in range(len(saved.files))]

    def _expect(self, word: str, what: str) -> None:
        assert self.process is not None and self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if line != word:
            code = self.process.wait()
            stderr = self.process.stderr.read() if self.process.stderr else ""
            self.close()
            raise worker_failure(code, stderr, self.platform, what)

    def close(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.stdin.close()
                try:
                    self.process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            for stream in (self.process.stdout, self.process.stderr):
                if stream is not None:
                    stream.close()
            self.process = None
        self.tmp.cleanup()


class RknnRunner(Runner):
    """Runs a .rknn on the toolkit's simulator: a worker process rebuilds it once, then answers per batch."""

    kind = "rknn"

    def __init__(self, path) -> None:
        super().__init__(path)
        self.workers: list[SimulatorWorker] = []  # the model's own first; others (its layers exposed) after
        self.recipe: dict[str, Any] = {}

    def activate_impl(self) -> None:
        self.recipe = simulator_recipe(self.path)
        self.workers = [SimulatorWorker(self.recipe)]

    def simulate_variant(self, recipe_dir: Path, what: str) -> SimulatorWorker:
        """A worker for another recipe of this model (same platform and mode), closed with the runner."""
        self.workers.append(SimulatorWorker({**self.recipe, "recipe_dir": str(recipe_dir)}, what))
        return self.workers[-1]

    def infer_impl(self, batch: np.ndarray) -> np.ndarray:
        size = tuple(self.recipe["size"])
        if batch.shape[2:] == size:
            return self._simulate(batch)
        # A larger frame: tiles of the compiled size, overlapping so every output pixel saw its whole receptive
        # field (exact up to rounding, runtimes/applications/tiling.py).
        from treefuse.config import ModelConfig
        from treefuse.runtimes.applications.tiling import derain_tiled, exact_overlap, receptive_radius

        radius = receptive_radius(ModelConfig.from_dict(self.artifact().config or {}))
        return np.stack([derain_tiled(self._simulate, image.transpose(1, 2, 0), size[0], exact_overlap(radius),
                                      radius).transpose(2, 0, 1) for image in batch])

    def _simulate(self, batch: np.ndarray) -> np.ndarray:
        return self.workers[0].run(batch)[0]

    def deactivate_impl(self) -> None:
        for worker in self.workers:
            worker.close()
        self.workers = []

    def input_constraints(self) -> dict[str, Any]:
        """The compiled size; a square one also runs larger frames tile by tile (with overlaps it needs room for)."""
        size = tuple((read_sidecar(self.path) or {}).get("provenance", {}).get("rknn", {}).get("size", ())) or None
        if not size:
            return {}
        from treefuse.config import ModelConfig
        from treefuse.runtimes.applications.tiling import exact_overlap, receptive_radius

        tiles = size[0] == size[1] and size[0] > exact_overlap(receptive_radius(ModelConfig.from_dict(
            self.artifact().config or {})))
        return {"min_hw": size, "max_hw": None if tiles else size}

    def read_metadata_impl(self) -> dict[str, str]:
        return (read_sidecar(self.path) or {}).get("metadata", {})

    def describe_impl(self) -> dict[str, Any]:
        facts = {"backend": f"rknn-toolkit2 simulator ({self.recipe.get('platform', '?')})",
                 "platform": self.recipe.get("platform"), "latency_note": SIMULATOR_NOTE, "simulated": True}
        layers = self.path.with_name(self.path.name + ".layers.json")
        if layers.is_file():  # export's accuracy_analysis travels into every result that runs this model
            rows = json.loads(layers.read_text()).get("layers", [])
            facts["layer_accuracy"] = {"file": layers.name, "layers": len(rows), "most_blamed": sorted(
                rows, key=lambda row: row["single_cos"])[:LAYERS_SHOWN]}
        return facts
