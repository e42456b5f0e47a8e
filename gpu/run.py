"""`make gpu-run`: everything a lent GPU should measure and train, in one call that ends on time.

Uses the machine's own Python (nothing installed; `gpu/source.py` puts this tree on the import
path) and writes to $OUT, at most 8 files:

    summary.json        every step's outcome and the figures that matter, with the device
    log.txt             every step's command and the tail of its output
    cuda-tests.xml      the CUDA-only tests (JUnit XML)
    latency.json        `treefuse sweep` at 720p and 1080p: FP32, FP16, bf16, folded, channels-last, CUDA graphs
    train-speed.json    `treefuse train --benchmark`
    weights.safetensors the weights the training chunk reached
    gpu-run.tar.gz      the run folder (config, metrics, checkpoints): carried back in, the next call resumes it

Settings (environment): OUT (required); DRY_RUN=1 runs the same steps on the CPU with small sizes;
GPU_SECONDS (default 480) is the whole call's budget; STEPS picks some of the steps (default all:
cuda-tests,latency,train-speed,train); TRAIN_SECONDS caps the training chunk; GPU_DATA (default
.gpu/data) holds what `make gpu-pack` copied; GPU_WORK (default .gpu/work) is scratch; INIT starts
the training from other weights; RESUME (default .gpu/resume/gpu-run.tar.gz when present) is a
gpu-run.tar.gz to continue.
Exit: 0 every step passed; 1 a test or gate failed; 2 the machine lacks something (one line); 3 a step broke.
"""
from __future__ import annotations

import importlib.util
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from xml.etree import ElementTree

ROOT = Path(__file__).resolve().parent.parent
SOURCE = [sys.executable, str(ROOT / "gpu" / "source.py"), "-m"]
WEIGHTS = "treefuse/weights/default.safetensors"
RUN_NAME = "gpu-run"
CUDA_TESTS = ["tests/train/test_train_run.py", "tests/train/test_train_patches.py",
              "tests/runtimes/test_torch_runner_cuda.py"]
# Import name -> distribution: what the steps import (the GPU machine's list is in docs/gpu_session.md).
NEEDED_MODULES = {"torch": "torch", "numpy": "numpy", "PIL": "pillow", "yaml": "pyyaml", "safetensors": "safetensors",
                  "tqdm": "tqdm", "png": "pypng", "pytest": "pytest"}
DATA_FOLDERS = ("rain100h-train50", "clean", "heavy-rain-sample5")
PACKED_DATA = ".gpu/data"  # where make gpu-pack copies them (the paths train/configs/paper-gpu.yaml names)
STEP_NAMES = ("cuda-tests", "latency", "train-speed", "train")
TRAINING_STEPS = ("train", "train-eager")  # train-eager: the fallback without a CUDA graph (train_command)
RESERVE_S = 20.0  # kept back at the end for packing $OUT
TRAIN_AT_LEAST_S = 60.0  # the earlier steps stop in time to leave the training this much
TAIL_CHARS = 4000
TRAIN_MARGIN_S = 10.0  # the chunk's own deadline, inside the step's: weights and the last checkpoint get written
MIN_STEP_S = 10.0  # a step with less time left is skipped, not started and killed


@dataclass(frozen=True)
class Settings:
    """What this call does, read from the environment."""

    out: Path
    dry_run: bool
    seconds: float
    data: Path
    init: str
    resume: Path | None
    work: Path  # scratch: the run folder being trained
    train_seconds: float | None = None  # at most this long for the training chunk (default: what is left)
    steps: tuple[str, ...] = STEP_NAMES

    @property
    def device(self) -> str:
        return "cpu" if self.dry_run else "cuda"


@dataclass
class Step:
    """One command, its time cap, and what it did."""

    name: str
    argv: list[str]
    cap_s: float
    rc: int | None = None
    skipped: str = ""  # why it did not run
    seconds: float = 0.0
    timed_out: bool = False
    output_tail: str = field(default="", repr=False)


class Refused(Exception):
    """The machine lacks something this call needs: one line, exit 2."""


def settings_from_env(env: dict[str, str]) -> Settings:
    """The call's settings; a missing or bad one is refused in one line."""
    if not env.get("OUT"):
        raise Refused("OUT is not set; run as OUT=DIR make gpu-run (the device machine sets it)")
    seconds = _seconds({"GPU_SECONDS": "480", **env}, "GPU_SECONDS")
    if seconds < TRAIN_AT_LEAST_S + RESERVE_S:
        raise Refused(f"GPU_SECONDS={seconds:g} leaves no time to train; "
                      f"give at least {TRAIN_AT_LEAST_S + RESERVE_S:g}")
    steps = tuple(s.strip() for s in env.get("STEPS", ",".join(STEP_NAMES)).split(",") if s.strip())
    if not steps or set(steps) - set(STEP_NAMES):
        raise Refused(f"STEPS must name some of {','.join(STEP_NAMES)}, got {env.get('STEPS')!r}")
    carried = ROOT / ".gpu" / "resume" / f"{RUN_NAME}.tar.gz"
    resume = env.get("RESUME") or (str(carried) if carried.is_file() else "")
    return Settings(out=Path(env["OUT"]), dry_run=env.get("DRY_RUN", "") not in ("", "0"), seconds=seconds,
                    data=Path(env.get("GPU_DATA") or ROOT / PACKED_DATA), init=env.get("INIT") or WEIGHTS,
                    work=Path(env.get("GPU_WORK") or ROOT / ".gpu" / "work"),
                    train_seconds=_seconds(env, "TRAIN_SECONDS") if env.get("TRAIN_SECONDS") else None,
                    resume=Path(resume) if resume else None, steps=steps)


def _seconds(env: dict[str, str], name: str) -> float:
    try:
        value = float(env[name])
    except ValueError:
        raise Refused(f"{name} must be a number of seconds, got {env[name]!r}") from None
    if not value > 0:
        raise Refused(f"{name} must be positive, got {env[name]!r}")
    return value


def check_machine(settings: Settings) -> dict[str, object]:
    """Everything the steps need, checked before any of them starts; returns the device's facts."""
    if sys.version_info < (3, 11):
        raise Refused(f"Python {platform.python_version()} is too old (tomllib); run with Python 3.11 or newer")
    sys.path.append(str(ROOT / ".gpu" / "site"))
    missing = [dist for module, dist in NEEDED_MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise Refused(f"this Python lacks {', '.join(missing)}; carry pure-Python ones as wheels: "
                      "make gpu-pack, then carry .gpu")
    absent = [name for name in DATA_FOLDERS if not (settings.data / name).is_dir()]
    if absent:
        raise Refused(f"no {', '.join(absent)} under {settings.data}; run make gpu-pack here and carry .gpu")
    if settings.resume is not None and not settings.resume.is_file():
        raise Refused(f"RESUME {settings.resume} is not a file; give the gpu-run.tar.gz a previous call returned")
    if settings.init != WEIGHTS and not (ROOT / settings.init).is_file():
        raise Refused(f"INIT {settings.init} is not a file in the tree; copy it under .gpu/ and carry it")
    if settings.out.exists() and any(settings.out.iterdir()):
        raise Refused(f"OUT {settings.out} is not empty; give an empty or new folder")
    probe = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120, cwd=ROOT)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["no output"])[-1]
        raise Refused(f"torch or this tree does not import with {sys.executable} ({last}); check that Python")
    facts = json.loads(probe.stdout)
    if not settings.dry_run and not facts["cuda"]:
        raise Refused("torch sees no CUDA device; run on the GPU machine, or DRY_RUN=1 to try the steps on the CPU")
    return facts


PROBE = """import json, platform, sys, torch
sys.path.insert(0, "gpu"); import source; source.use_source_tree()
from treefuse.device import cpu_facts
cuda = torch.cuda.is_available()
print(json.dumps({"python": platform.python_version(), "torch": torch.__version__, "cuda": cuda,
  "cuda_version": torch.version.cuda, "gpu": torch.cuda.get_device_name() if cuda else None,
  "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1) if cuda else None,
  "compute_capability": ".".join(map(str, torch.cuda.get_device_capability())) if cuda else None,
  "cpu": cpu_facts()["model"], "cpu_isa_flags": cpu_facts()["isa_flags"],
  "cpu_count": __import__("os").cpu_count()}))"""


def plan(settings: Settings, work: Path) -> list[Step]:
    """The steps in order, with their commands for a GPU or (DRY_RUN) for the CPU."""
    out, data, dry = settings.out, settings.data, settings.dry_run
    weights = WEIGHTS  # relative: the steps run in the tree's root
    if dry:  # the same commands, small: sizes stand in for 720p/1080p, options the CPU runs
        backends = [f"torch:{weights}?device=cpu", f"torch:{weights}?device=cpu,fold=true",
                    f"torch:{weights}?device=cpu,fold=true,channels_last=true"]
        sweep = ["--sizes", "48x64,72x96", "--warmup", "1", "--iters", "2"]
        bench = ["--bench-steps", "1", "--set", "speed.device=cpu", "--set", "data.batch_size=2",
                 "--set", "data.patch_size=24"]
    else:
        backends = [f"torch:{weights}?device=cuda"] + [
            f"torch:{weights}?device=cuda,{options}" for options in (
                "fold=true", "dtype=fp16,fold=true,channels_last=true",
                "dtype=fp16,fold=true,channels_last=true,cuda_graph=true",
                "dtype=bf16,fold=true,channels_last=true,cuda_graph=true")]
        sweep = ["--sizes", "720x1280,1080x1920", "--warmup", "5", "--iters", "50"]
        bench = ["--bench-steps", "20"]
    tests = ["pytest", "-q", "-p", "no:cacheprovider", "-rs", f"--junitxml={out / 'cuda-tests.xml'}", "-k", "cuda",
             *[str(ROOT / t) for t in CUDA_TESTS]]
    latency = ["treefuse", "sweep", *[a for b in backends for a in ("--backend", b)], *sweep,
               "--images", str(data / "heavy-rain-sample5"), "--json", str(out / "latency.json")]
    speed = ["treefuse", "train", "--benchmark", "--config", "paper", *bench, "--json", str(out / "train-speed.json")]
    steps = [Step("cuda-tests", SOURCE + tests, 150.0), Step("latency", SOURCE + latency, 120.0),
             Step("train-speed", SOURCE + speed, 150.0), Step("train", SOURCE + train_command(settings, work), 0.0)]
    return [step for step in steps if step.name in settings.steps]


def train_command(settings: Settings, work: Path, eager: bool = False) -> list[str]:
    """The timed training chunk: a new run of the paper's recipe, or the carried run resumed.

    `eager` is the fallback when the captured step broke: the same run without the CUDA graph (a speed
    setting, so a run that reached a checkpoint resumes from it; one that did not starts again)."""
    run = work / RUN_NAME
    chunk = ["treefuse.train.timed_chunk", "--weights", str(settings.out / "weights.safetensors"),
             "--json", str(work / "train-summary.json"), "--seconds", "{seconds}",
             *(["--first-chunk", "4"] if settings.dry_run else [])]
    speed_here = [f"speed.device={settings.device}"] + (
        ["speed.precision=fp32", "speed.cuda_graph=false", "speed.channels_last=false", "speed.data_on_device=false"]
        if settings.dry_run else []) + (["speed.cuda_graph=false"] if eager else [])
    if settings.resume is not None or (eager and any(run.glob("checkpoints/step_*"))):
        return [*chunk, "--resume", str(run), *[a for s in speed_here for a in ("--set", s)]]
    learned = [f"optim.init_weights={settings.init}"]
    if settings.data.resolve() != (ROOT / PACKED_DATA).resolve():  # paper-gpu.yaml names .gpu/data, relative: a
        # carried run then resumes wherever the tree lies, on the next GPU or here
        learned += [f"data.{key}={data}" for key, data in (("train_dirs", [str(settings.data / "rain100h-train50")]),
                                                          ("synthetic_dir", settings.data / "clean"),
                                                          ("val_dir", settings.data / "rain100h-train50"))]
    if settings.dry_run:
        learned += ["data.synthetic_pool=4", "data.patch_size=24", "data.batch_size=2", "data.val_range=041-042",
                    "run.validate_every=8", "run.log_every=2", "run.checkpoint_every=4"]
    overrides = [a for s in learned + speed_here for a in ("--set", s)]
    return [*chunk, "--config", "paper-gpu", "--out", str(run), *overrides]


def run_step(step: Step, timeout_s: float, log: Path, env: dict[str, str]) -> None:
    """Run one step in its own process group (a timeout ends all of it); its output goes to the log."""
    start = time.monotonic()
    with tempfile.TemporaryFile("w+") as output:
        process = subprocess.Popen(step.argv, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, text=True,
                                   start_new_session=True, env=env)
        try:
            step.rc = process.wait(timeout=max(timeout_s, 1.0))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            step.rc, step.timed_out = process.wait(), True
        output.seek(0)
        step.output_tail = output.read()[-TAIL_CHARS:]
    step.seconds = round(time.monotonic() - start, 1)
    with log.open("a") as file:
        file.write(f"\n=== {step.name}: rc {step.rc}{' (timed out)' if step.timed_out else ''}, {step.seconds} s\n"
                   f"$ {' '.join(step.argv)}\n{step.output_tail}\n")
    print(f"{step.name}: rc {step.rc}{' (timed out)' if step.timed_out else ''} in {step.seconds} s", flush=True)


def unpack_resume(settings: Settings, work: Path) -> None:
    """Extract the carried gpu-run.tar.gz into the work folder (members outside it are refused)."""
    with tarfile.open(settings.resume) as archive:
        archive.extractall(work, filter="data")
    if not (work / RUN_NAME / "config.yaml").is_file():
        raise Refused(f"{settings.resume} holds no {RUN_NAME}/config.yaml; give the gpu-run.tar.gz a call returned")


def pack_run(work: Path, out: Path) -> None:
    """The run folder as $OUT/gpu-run.tar.gz, written beside and renamed in."""
    staged = out / f".{RUN_NAME}.tar.gz.tmp"
    with tarfile.open(staged, "w:gz") as archive:
        archive.add(work / RUN_NAME, arcname=RUN_NAME)
    staged.replace(out / f"{RUN_NAME}.tar.gz")


def figures(out: Path, work: Path) -> dict[str, object]:
    """The numbers the issue asks for, read back from the steps' files."""
    found: dict[str, object] = {}
    try:
        suite = ElementTree.parse(out / "cuda-tests.xml").getroot()
        suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
        found["cuda_tests"] = {key: int(suite.get(key, 0)) for key in ("tests", "failures", "errors", "skipped")}
    except (OSError, ElementTree.ParseError, AttributeError):
        pass
    latency = _read_json(out / "latency.json")
    if latency:
        found["latency_p50_ms"] = {f"{c['backend']} @ {c['size'][0]}x{c['size'][1]}": c["latency_ms"]["p50"]
                                   for c in latency.get("cells", [])}
    speed = _read_json(out / "train-speed.json")
    if speed:
        found["train_it_per_s"] = speed.get("it_per_s")
    trained = _read_json(work / "train-summary.json")
    if trained:
        found["training"] = trained
    return found


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def write_summary(out: Path, summary: dict[str, object]) -> None:
    """$OUT/summary.json, written beside and renamed in (a kill leaves the previous one whole)."""
    staged = out / ".summary.json.tmp"
    staged.write_text(json.dumps(summary, indent=2, sort_keys=True, default=str))
    staged.replace(out / "summary.json")


def step_records(steps: list[Step]) -> list[dict[str, object]]:
    """What each step that ran (or was skipped) did, for summary.json."""
    return [{"name": s.name, "rc": s.rc, "seconds": s.seconds, "timed_out": s.timed_out,
             **({"skipped": s.skipped} if s.skipped else {})} for s in steps if s.rc is not None or s.skipped]


def exit_code(steps: list[Step]) -> int:
    """0 all passed; 1 only tests or gates failed (pytest and treefuse say 1 for that); else 3."""
    codes = {s.rc for s in steps if s.rc != 0 and not s.skipped}
    if not codes:
        return 0
    return 1 if codes == {1} and not any(s.timed_out for s in steps) else 3


def main() -> int:
    """Check, then run the steps inside the budget, then pack $OUT."""
    start = time.monotonic()
    try:
        settings = settings_from_env(dict(os.environ))
        facts = check_machine(settings)
    except Refused as exc:
        print(f"treefuse: error: {exc}", file=sys.stderr)
        return 2
    settings.out.mkdir(parents=True, exist_ok=True)
    deadline = start + settings.seconds
    work = settings.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if settings.resume is not None:
        try:
            unpack_resume(settings, work)
        except (Refused, tarfile.TarError) as exc:
            print(f"treefuse: error: {exc}", file=sys.stderr)
            return 2
    log = settings.out / "log.txt"
    log.write_text(f"gpu-run on {facts}; budget {settings.seconds:g} s; dry run {settings.dry_run}\n")
    steps = plan(settings, work)
    # The dry run proves the steps work, not their speed: one thread each keeps a shared CPU usable.
    step_env = {**os.environ, **({"OMP_NUM_THREADS": "1"} if settings.dry_run else {})}
    summary: dict[str, object] = {"kind": "treefuse-gpu-run", "device": facts, "dry_run": settings.dry_run,
                                  "budget_s": settings.seconds, "init_weights": settings.init,
                                  "resumed_from": str(settings.resume) if settings.resume else None, "steps": []}
    for step in steps:
        run_in_budget(step, settings, deadline, log, step_env)
        if step.name == "train" and step.rc not in (0, None) and not step.timed_out and not settings.dry_run:
            if settings.resume is None and not any((work / RUN_NAME).glob("checkpoints/step_*")):
                shutil.rmtree(work / RUN_NAME, ignore_errors=True)  # our scratch: the new run starts again
            steps.append(Step("train-eager", SOURCE + train_command(settings, work, eager=True), 0.0))
        summary["steps"] = step_records(steps)
        write_summary(settings.out, summary)
    if (work / RUN_NAME / "config.yaml").is_file():
        pack_run(work, settings.out)
    summary.update(figures(settings.out, work), seconds=round(time.monotonic() - start, 1), exit_code=exit_code(steps))
    write_summary(settings.out, summary)
    print(json.dumps({k: summary[k] for k in ("exit_code", "seconds")}))
    return int(summary["exit_code"])


def run_in_budget(step: Step, settings: Settings, deadline: float, log: Path, env: dict[str, str]) -> None:
    """Run a step with what the deadline leaves it, or mark it skipped when that is too little."""
    left = deadline - time.monotonic() - RESERVE_S
    if step.name in TRAINING_STEPS:
        seconds = min(left - TRAIN_MARGIN_S, settings.train_seconds or left)
        step.argv = [a.replace("{seconds}", f"{max(seconds, 1.0):.0f}") for a in step.argv]
        timeout = left  # the chunk keeps its own deadline; this only ends a hung one
    else:
        timeout = min(step.cap_s, left - (TRAIN_AT_LEAST_S if "train" in settings.steps else 0.0))
    if timeout < MIN_STEP_S:
        step.skipped = f"{timeout:.0f} s left for it"
    else:
        run_step(step, timeout, log, env)


if __name__ == "__main__":
    sys.exit(main())
