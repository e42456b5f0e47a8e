#!/usr/bin/env bash
# Regenerate the committed CPU report from the shipped weights (run from the repository root).
# Exports the artifacts it measures, sweeps them, and builds reports/report.{md,html}.
set -euo pipefail
T=${TREEFUSE:-.venv/bin/treefuse}
A=reports/artifacts
DATA=${DATA:-../shared/data}
NOTE=${NOTE:-"Measured on a 2-core virtual machine shared with other jobs: absolute times are noisy; read the ratios, which come from interleaved runs."}
mkdir -p "$A" outputs/report-calib/rain
for i in $(seq -w 1 40); do ln -sf "$(realpath "$DATA/rain100h-train50/rain/0$i.png")" outputs/report-calib/rain/; done
$T calib build --images outputs/report-calib/rain --count 16 --size 256x256 --seed 0 --out outputs/report-calib/set
$T export onnx --out "$A/default.onnx"
$T export onnx --precision int8 --calib outputs/report-calib/set --out "$A/default.int8.onnx"
BACKENDS=(--backend "onnx:$A/default.onnx" --backend "onnx:$A/default.int8.onnx"
          --backend "openvino:$A/default.onnx" --backend "openvino:$A/default.onnx?precision=bf16"
          --backend "openvino:$A/default.int8.onnx?precision=bf16")
$T sweep --backend torch:treefuse/weights/default.safetensors "${BACKENDS[@]}" \
  --sizes 256x256,512x512,720x1280 --iters 5 --warmup 1 --threads 2 \
  --images "$DATA/heavy-rain-sample5" --json reports/cpu-xeon-amx.json
$T sweep "${BACKENDS[@]}" --sizes 1080x1920 --iters 3 --warmup 1 --threads 2 --json reports/cpu-xeon-amx-1080p.json
mkdir -p reports/bench
$T bench "${BACKENDS[@]}" --size 512x512 --iters 10 --threads 2 --json reports/bench/openvino-vs-ort-512.json
$T report reports/cpu-xeon-amx.json reports/cpu-xeon-amx-1080p.json --out reports --note "$NOTE"
$T report --verify reports/report.md
