"""Issue 29's table: .rknn exports per platform and precision, judged on the toolkit's simulator vs PyTorch FP32.

    .venv/bin/python benchmarks/rknn_measure.py --pairs PAIRS --calib CALIB --qat QDQ.onnx --out reports/rknn/results.json

Each cell is a real `treefuse export rknn` (its own check on PAIRS, so task PSNR is judged); a cell that
misses its gate or that the toolkit cannot build is recorded with its verdict or its one-line error.
Conversion time is the toolkit's own (load, quantize, build, export), not the check. Needs .venv-rknn.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from treefuse.device import device_fingerprint
from treefuse.errors import GateFailed, TreefuseError
from treefuse.export.request import ExportRequest, run_export
from treefuse.export.verify import recorded_checks
from treefuse.files import write_json_atomic
from treefuse.provenance import provenance

# Everything the cells import lazily, imported now: a tree edited while the run takes its minutes stays one snapshot.
for _name in ("treefuse.qat_run", "treefuse.route_costs", "treefuse.export.rknn.exporter",
              "treefuse.export.onnx.exporter", "treefuse.export.onnx.qat_export", "treefuse.calib.store",
              "treefuse.runtimes.backends.rknn_runner", "treefuse.runtimes.backends.torch_runner",
              "treefuse.runtimes.backends.registry", "treefuse.runtimes.applications.tiling", "treefuse.overlap"):
    __import__(_name)


def cell(platform: str, precision: str, pairs: Path, out: Path, calib: Path | None, qat: Path | None,
         options: dict[str, Any]) -> dict[str, Any]:
    """One export: its verdict (passed or not), the toolkit's conversion time, or the error line."""
    from treefuse.export.rknn import exporter

    built: list[dict[str, Any]] = []
    original = exporter._build

    def recording_build(job: dict[str, Any], name: str) -> dict[str, Any]:
        built.append(original(job, name))
        return built[-1]

    exporter._build = recording_build
    request = ExportRequest("rknn", Path(__file__).resolve().parents[1] / "treefuse/weights/default.safetensors",
                            out, precision, calibration=calib, paired_images=pairs, qat_run=qat, size=(256, 256),
                            options={"platform": platform, "algorithm": "normal", "float16_layers": 0,
                                     "layer_report": False, **options})
    row: dict[str, Any] = {"platform": platform, "precision": precision, "route": "qat" if qat else
                           ("ptq" if precision == "int8" else "float"), "options": options}
    started = time.perf_counter()
    try:
        with recorded_checks() as checks:  # a miss's figures too: the pipeline raises them away
            try:
                run_export(request)
                row["outcome"] = "passed"
            except GateFailed as exc:
                row["outcome"], row["message"] = "missed its gate", str(exc)
        verdict = checks[-1] if checks else {}
        row.update({key: verdict.get(key) for key in ("output_psnr_db", "task", "worst_image", "gates", "failures")})
    except TreefuseError as exc:
        row["outcome"], row["message"] = "error", str(exc)
    finally:
        exporter._build = original
    row["conversion_s"] = [b["conversion_s"] for b in built]
    row["float16_layers"] = built[-1]["float_layers"] if built else []
    row["qdq_rewrites"] = built[-1]["recipe"].get("qdq_rewrites", []) if built else []  # export/rknn/toolkit_qdq.py
    row["export_and_check_s"] = round(time.perf_counter() - started, 1)
    layers = out.with_name(out.name + ".layers.json")
    if layers.is_file():
        table = json.loads(layers.read_text())["layers"]
        row["blamed_layers"] = sorted(table, key=lambda r: r["single_cos"])[:6]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=Path, required=True)
    parser.add_argument("--calib", type=Path, required=True)
    parser.add_argument("--qat", type=Path, required=True, help="a QDQ INT8 ONNX model (ONNX Runtime layout)")
    parser.add_argument("--platforms", default="rk3588,rv1106")
    parser.add_argument("--work", type=Path, default=Path("outputs/rknn/work"))
    parser.add_argument("--cells", default="fp16,ptq,ptq-f16x8,qat", help="which cells, per platform")
    parser.add_argument("--tag", default="", help="appended to each cell's name (e.g. which QDQ layout --qat is)")
    parser.add_argument("--out", type=Path, required=True, help="results JSON; cells already there are kept")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    plans = {"fp16": ("fp16", None, None, {}), "ptq": ("int8", args.calib, None, {"layer_report": True}),
             "ptq-nolayers": ("int8", args.calib, None, {}),
             "ptq-f16x8": ("int8", args.calib, None, {"float16_layers": 8}), "qat": ("int8", None, args.qat, {})}
    rows = json.loads(args.out.read_text())["cells"] if args.out.is_file() else []
    for platform in args.platforms.split(","):
        for key in args.cells.split(","):
            precision, calib, qat, options = plans[key]
            name = f"{platform}-{precision}-{'qat' if qat else 'ptq' if calib else 'float'}" + \
                   (f"-f16x{options['float16_layers']}" if options.get("float16_layers") else "") + args.tag
            row = cell(platform, precision, args.pairs, args.work / f"{name}.rknn", calib, qat, options)
            print(name, row["outcome"], json.dumps({k: row.get(k) for k in ("output_psnr_db", "task", "conversion_s")}),
                  flush=True)
            rows = [r for r in rows if r["name"] != name] + [{"name": name, **row}]
            write_json_atomic(args.out, {  # after every cell: a run cut short keeps what it measured
                "schema": "treefuse-rknn-measure-v1", "device": device_fingerprint(None), "provenance": provenance(),
                "pairs": str(args.pairs), "calibration_set": str(args.calib), "qat_model": str(args.qat),
                "size": [256, 256], "cells": rows,
                "note": "output PSNR and task PSNR from rknn-toolkit2's x86 simulator of the NPU, vs PyTorch FP32; "
                        "conversion_s is the toolkit's own build (load, calibrate, compile, export), one per build"})


if __name__ == "__main__":
    main()
