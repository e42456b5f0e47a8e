"""Rockchip's rknn-toolkit2, driven through files: run as `python worker.py COMMAND JOB.json` inside .venv-rknn.

The toolkit pins numpy<=1.26.4, onnx<=1.18 and torch<=2.4, so it cannot live in treefuse's venv,
and it can crash its process (SIGSEGV while building for rv1106/rv1103). This script imports
nothing of treefuse: a job (JSON) names .onnx/.npy files in, files out; the toolkit's chatter goes
to a log file, and only this script's own lines reach the parent (`ready`, `ok`, or one
`treefuse: error: ...` line on stderr with exit 2). The parent turns a crash into one line too. The
rebuild on the simulator is simulator.py's, which an RKNN device bundle runs too.

  build JOB    an ONNX model (pinned to 1x3xHxW) -> .rknn plus the recipe the simulator rebuilds from
  serve JOB    rebuild the recipe on the x86 simulator, then answer `IN.npy OUT.npz` lines on stdin (every output)
  analyze JOB  the toolkit's per-layer accuracy_analysis of a recipe on the simulator -> a JSON table
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

try:
    from . import simulator  # imported as treefuse.export.rknn.worker
except ImportError:  # run as a script in the toolkit's venv: its sibling
    import simulator

RECIPE_FILES = {"float": ("model.onnx",), "qdq": ("model.onnx",),
                "int8": ("model.model", "model.data", "quantization.cfg")}  # what each mode rebuilds from


def build(job: dict[str, Any]) -> dict[str, Any]:
    """Build the .rknn (`job['out']`) and write its simulator recipe into `job['recipe_dir']`."""
    recipe, mode = Path(job["recipe_dir"]), job["mode"]
    rewrites = list(job.get("qdq_rewrites", simulator.toolkit_qdq().REWRITES)) if mode == "qdq" else []
    recipe.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    toolkit = simulator.new_toolkit(job)
    if mode == "int8":
        if not (recipe / "quantization.cfg").is_file():  # a rebuild with float16 layers reuses the calibration
            with _cwd(recipe):  # step 1 writes model.model, model.data, model.quantization.cfg beside the ONNX
                shutil.copyfile(job["onnx"], "model.onnx")
                simulator.check(toolkit.load_onnx(model="model.onnx"), "load_onnx")
                simulator.check(toolkit.hybrid_quantization_step1(dataset=job["dataset"]), "quantization (hybrid step 1)")
                os.replace("model.quantization.cfg", "quantization.cfg")
                os.remove("model.onnx")
        keep_in_float16(recipe / "quantization.cfg", job.get("float_layers", []))
        toolkit.release()
        toolkit = simulator.rebuilt(recipe, job)
    else:
        shutil.copyfile(job["onnx"], recipe / "model.onnx")  # the recipe keeps the model as given; rewrites are named
        simulator.load_onnx(toolkit, recipe / "model.onnx", rewrites)
        simulator.check(toolkit.build(do_quantization=False), "build")
    simulator.check(toolkit.export_rknn(job["out"]), "export_rknn")
    toolkit.release()
    return {"recipe": {"mode": mode, "platform": job["platform"], "files": list(RECIPE_FILES[mode]),
                       "optimization_level": job.get("optimization_level", 3), "qdq_rewrites": rewrites},
            "float_layers": job.get("float_layers", []), "tool_versions": tool_versions(),
            "conversion_s": round(time.perf_counter() - started, 2)}


def keep_in_float16(cfg: Path, layers: list[str]) -> None:
    """Name `layers` (the toolkit's layer names) under custom_quantize_layers: the NPU runs them in float16."""
    if not layers:
        return
    text = cfg.read_text()
    entries = "".join(f"    {name}: float16\n" for name in layers)
    text, count = re.subn(r"^custom_quantize_layers: \{\}$", "custom_quantize_layers:\n" + entries.rstrip("\n"),
                          text, count=1, flags=re.M)
    if count != 1:
        raise simulator.JobError("the toolkit's quantization.cfg has no empty custom_quantize_layers section to fill")
    cfg.write_text(text)


def serve(job: dict[str, Any], replies: Any) -> dict[str, Any]:
    """Rebuild on the simulator, say `ready`, then answer each `IN.npy OUT.npz` line with `ok` until stdin closes."""
    import numpy as np

    toolkit = simulator.rebuilt(Path(job["recipe_dir"]), job)
    simulator.check(toolkit.init_runtime(), "init_runtime (simulator)")
    _reply(replies, "ready")
    for line in sys.stdin:
        source, _, target = line.strip().partition(" ")
        outputs = simulator.simulate(toolkit, np.load(source, allow_pickle=False))
        with open(target, "wb") as handle:  # every graph output, in order (np.savez would add .npz to the name)
            np.savez(handle, *outputs)
        _reply(replies, "ok")
    toolkit.release()
    return {}


def _reply(replies: Any, line: str) -> None:
    replies.write(line + "\n")
    replies.flush()


def analyze(job: dict[str, Any]) -> dict[str, Any]:
    """accuracy_analysis of an INT8 recipe on the simulator: per layer, cosine and distance vs float."""
    recipe = Path(job["recipe_dir"])
    if job["mode"] != "int8":
        raise simulator.JobError("accuracy_analysis runs on the simulator only for models the toolkit quantized itself "
                       "(not a QDQ model, not float16)")
    toolkit = simulator.rebuilt(recipe, job)
    with tempfile.TemporaryDirectory(prefix="treefuse-rknn-analysis-") as tmp:
        simulator.check(toolkit.accuracy_analysis(inputs=job["inputs"], output_dir=tmp), "accuracy_analysis")
        table = parse_error_analysis((Path(tmp) / "error_analysis.txt").read_text())
    toolkit.release()
    return {"layers": table, "tool_versions": tool_versions()}


ROW = re.compile(r"^\[(\w+)\]\s+(\S+)\s+([\d.]+)\s*\|\s*([\d.]+)\s+([\d.]+)\s*\|\s*([\d.]+)")


def parse_error_analysis(text: str) -> list[dict[str, Any]]:
    """The toolkit's error_analysis.txt rows: op, tensor, entire and single-layer cosine and Euclidean distance."""
    rows = []
    for line in text.splitlines():
        match = ROW.match(line.strip())
        if match:
            op, tensor, cos, euc, single_cos, single_euc = match.groups()
            rows.append({"op": op, "tensor": tensor, "entire_cos": float(cos), "entire_euc": float(euc),
                         "single_cos": float(single_cos), "single_euc": float(single_euc)})
    return rows


def tool_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("rknn-toolkit2", "torch", "numpy", "onnx"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


@contextlib.contextmanager
def _cwd(folder: Path) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


COMMANDS = {"build": build, "analyze": analyze}


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in (*COMMANDS, "serve"):
        print(f"treefuse: error: usage: worker.py {{{','.join((*COMMANDS, 'serve'))}}} JOB.json; "
              "run through treefuse", file=sys.stderr)
        return 2
    command, job = argv[0], json.loads(Path(argv[1]).read_text())
    replies = os.fdopen(os.dup(1), "w")  # kept before the toolkit's output is sent to the log
    try:
        with simulator.toolkit_output(Path(job["log"])):
            facts = serve(job, replies) if command == "serve" else COMMANDS[command](job)
    except (simulator.JobError, ValueError) as exc:  # the toolkit's own errors are ValueErrors (its log's `E` lines)
        lines = [line for line in str(exc).splitlines() if line.strip()]  # the toolkit's carry a traceback first
        cause = simulator.last_toolkit_error(Path(job["log"]))
        print(f"treefuse: error: {' '.join(lines[-1].split())[:300] if lines else type(exc).__name__}"
              + (f"; it says: {cause}" if cause else ""), file=sys.stderr)
        return 2
    if "facts" in job:
        Path(job["facts"]).write_text(json.dumps(facts, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
