#!/usr/bin/env bash
# Regenerate the committed CPU report from the shipped weights (run from the repository root).
# Exports the artifacts it measures, sweeps them, and builds reports/report.{md,html}.
#   LABEL   names the result files (default cpu-<vendor>-<best ISA>, e.g. cpu-epyc-avx2)
#   INT8    an INT8 ONNX to report instead of a fresh post-training export (e.g. a QAT model)
# BF16 backends run only where the CPU has BF16 (AVX512-BF16 or AMX): elsewhere OpenVINO refuses them.
set -euo pipefail
T=${TREEFUSE:-.venv/bin/treefuse}
A=reports/artifacts
DATA=${DATA:-../shared/data}
FLAGS=$(grep -m1 '^flags' /proc/cpuinfo || true)
VENDOR=$(grep -m1 'model name' /proc/cpuinfo | grep -qi epyc && echo epyc || echo xeon)
ISA=$( [[ $FLAGS == *amx_bf16* ]] && echo amx || { [[ $FLAGS == *avx512f* ]] && echo avx512 || echo avx2; } )
LABEL=${LABEL:-cpu-$VENDOR-$ISA}
NOTE=${NOTE:-"Measured on a 2-core virtual machine shared with other jobs: absolute times are noisy; read the ratios, which come from interleaved runs."}
mkdir -p "$A" outputs/report-calib/rain
for i in $(seq -w 1 40); do ln -sf "$(realpath "$DATA/rain100h-train50/rain/0$i.png")" outputs/report-calib/rain/; done
$T calib build --images outputs/report-calib/rain --count 16 --size 256x256 --seed 0 --out outputs/report-calib/set
$T export onnx --out "$A/default.onnx"
if [[ -n ${INT8:-} ]]; then
  [[ $(realpath "$INT8") == $(realpath "$A/default.int8.onnx") ]] || cp "$INT8" "$A/default.int8.onnx"
else
  $T export onnx --precision int8 --calib outputs/report-calib/set --out "$A/default.int8.onnx"
fi
BACKENDS=(--backend "onnx:$A/default.onnx" --backend "onnx:$A/default.int8.onnx" --backend "openvino:$A/default.onnx")
if [[ $FLAGS == *avx512_bf16* || $FLAGS == *amx_bf16* ]]; then
  BACKENDS+=(--backend "openvino:$A/default.onnx?precision=bf16" --backend "openvino:$A/default.int8.onnx?precision=bf16")
else
  BACKENDS+=(--backend "openvino:$A/default.int8.onnx")
fi
$T sweep --backend torch:treefuse/weights/default.safetensors "${BACKENDS[@]}" \
  --sizes ${SIZES:-256x256,512x512,720x1280} --iters ${ITERS:-5} --warmup 1 --threads 2 --memory own-process \
  --images "$DATA/heavy-rain-sample5" --json "reports/$LABEL.json"
$T report "reports/$LABEL.json" --out reports --note "$NOTE"
$T report --verify reports/report.md
