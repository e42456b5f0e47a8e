#!/usr/bin/env bash
# Regenerate reports/tensorrt/ (run from the repository root): the TensorRT-target INT8 model, its
# parser check, its ONNX Runtime proxy parity beside the ONNX Runtime target, and FP16 ranges.
# Nothing here runs TensorRT: see docs/tensorrt.md for what a GPU session replaces.
set -euo pipefail
T=${TREEFUSE:-.venv/bin/treefuse}
PY=${PYTHON:-.venv/bin/python}
DATA=${DATA:-../shared/data}
A=reports/artifacts
R=reports/tensorrt
W=outputs/trt-proxy
mkdir -p "$R" "$W/calib-src/rain" "$W/unseen/rain"
# The calibration set of benchmarks/cpu_report.sh: 16 random 256x256 crops of Rain100H rain/001-040, seed 0.
for i in $(seq -w 1 40); do ln -sf "$(realpath "$DATA/rain100h-train50/rain/0$i.png")" "$W/calib-src/rain/"; done
[ -f "$W/calib/manifest.json" ] || $T calib build --images "$W/calib-src/rain" --count 16 --size 256x256 --seed 0 --out "$W/calib"
[ -f "$A/default.onnx" ] || $T export onnx --out "$A/default.onnx"
$T export onnx --precision int8 --target tensorrt --calib "$W/calib" --out "$R/default.int8.trt.onnx"
$T check --target tensorrt "$R/default.int8.trt.onnx" --json "$R/check.trt-target.json"
$T check --target tensorrt "$A/default.int8.onnx" --json "$R/check.ort-target.json" || true  # refused, by design
$PY benchmarks/trt_int8_proxy.py --fp32 "$A/default.onnx" --model "tensorrt=$R/default.int8.trt.onnx" \
    --model "onnxruntime=$A/default.int8.onnx" --images "$DATA/heavy-rain-sample5" --json "$R/int8-proxy.json"
# FP16 headroom per layer: over the calibration set, and over the 5 unseen heavy-rain images at full size.
for i in 001 002 003 004 005; do ln -sf "$(realpath "$DATA/heavy-rain-sample5/rain/$i.png")" "$W/unseen/rain/"; done
[ -f "$W/unseen-set/manifest.json" ] || $T calib build --images "$W/unseen/rain" --count 5 --size 321x481 --seed 0 --out "$W/unseen-set"
$PY - "$A/default.onnx" "$W/calib" "$R/fp16-ranges.calib.json" "$W/unseen-set" "$R/fp16-ranges.heavy-rain-sample5.json" <<'PYEOF'
import sys
from treefuse.export.fp16_range import check_fp16, write_report
model, *pairs = sys.argv[1:]
for calib, out in zip(pairs[::2], pairs[1::2]):
    write_report(check_fp16(model, calib), __import__("pathlib").Path(out))
PYEOF
