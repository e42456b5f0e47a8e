#!/usr/bin/env bash
# Rule (d) of the model card for candidate weights: one INT8 target's QAT recipe, its export, and the artifact
# judged once on H5 and on the ten Rain100H pairs that no run or calibration of its fold saw, with the project's
# int8 gates (output >= 35 dB from FP32, mean task drop <= 0.1 dB, worst image <= 0.4 dB). The recipes are
# docs/quantization.md's, session 7 (fold B: QAT on pairs 001-030 + 041-050, fresh 031-040; fold C: QAT on
# 001-020 + 031-050, fresh 021-030), written down before candidate 7 was judged by them.
#   reports/candidates/int8_rule.sh NAME WEIGHTS RECIPE [OUT_DIR]
#   RECIPE: ort-s0 | coreml-f0 | trt-300 | xnn-d1-f0 (candidates 7 and 8), trt-s0 (the TensorRT recipe the shipped
#   artifact passed with, fold C; from candidate 9 on, in trt-300's place)
# Needs outputs/s7/{qatB,qatC,freshB,freshC} (copies of ../shared/data/rain100h-train50's pairs, made here if
# missing) and the calibration sets calibB32 (sha256 b55080e4...) and calibC32 (d4686da4...), rebuilt here if missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 3 ] || { echo "usage: reports/candidates/int8_rule.sh NAME WEIGHTS RECIPE [OUT_DIR]" >&2; exit 2; }
name=$1 weights=$2 recipe=$3 out=${4:-reports/candidates/scores}
case $recipe in
  ort-s0)    f=B; qat=(--target ort-qdq --steps 150 --scale-lr-factor 0 --distill 1)
             export=(onnx --precision int8) suffix=int8.onnx kind=onnx ;;
  coreml-f0) f=B; qat=(--target coreml-w8a8 --steps 150 --freeze-ranges-at 0 --distill 1)
             export=(coreml --precision w8a8) suffix=w8a8.mlpackage kind=coreml ;;
  trt-300)   f=B; qat=(--target trt-qdq --steps 300 --scale-lr-factor 10 --distill 1)
             export=(onnx --target tensorrt --precision int8) suffix=int8.trt.onnx kind=onnx ;;
  trt-s0)    f=C; qat=(--target trt-qdq --steps 300 --scale-lr-factor 0 --distill 1)
             export=(onnx --target tensorrt --precision int8) suffix=int8.trt.onnx kind=onnx ;;
  xnn-d1-f0) f=C; qat=(--target xnnpack-int8 --steps 150 --freeze-ranges-at 0 --distill 1)
             export=(executorch --precision int8) suffix=int8.pte kind=executorch ;;
  *) echo "unknown recipe $recipe: ort-s0, coreml-f0, trt-300, trt-s0 or xnn-d1-f0" >&2; exit 2 ;;
esac
py=${PYTHON:-.venv/bin/python}
pairs=../shared/data/rain100h-train50 work=outputs/candidates/$name
mkdir -p "$work" "$out"

fold() {  # fold DIR FIRST-LAST... : a paired folder of the listed Rain100H pairs
  local dir=outputs/s7/$1; shift
  [ -d "$dir" ] && return
  [ -d "$pairs" ] || { echo "$dir is missing and so is $pairs to make it from; put Rain100H's 50 pairs there" >&2; exit 2; }
  mkdir -p "$dir/rain" "$dir/clean"
  for span in "$@"; do
    for i in $(seq "${span%-*}" "${span#*-}"); do
      n=$(printf %03d "$i"); cp "$pairs/rain/$n.png" "$dir/rain/"; cp "$pairs/clean/$n.png" "$dir/clean/"
    done
  done
}
fold qatB 1-30 41-50; fold freshB 31-40; fold qatC 1-20 31-50; fold freshC 21-30
for letter in B C; do
  [ -d "outputs/s7/calib${letter}32" ] || "$py" -m treefuse calib build --images "outputs/s7/qat$letter" --count 32 \
    --size 256x256 --seed 0 --out "outputs/s7/calib${letter}32" >/dev/null
done

run=$work/$recipe-$f artifact=$work/$recipe-$f.$suffix
if [ -d "$run" ]; then  # resumes an unfinished run; a finished one has nothing left to do
  "$py" -m treefuse qat --resume "$run"
else
  "$py" -m treefuse qat --weights "$weights" --data "outputs/s7/qat$f" --calib "outputs/s7/calib${f}32" "${qat[@]}" \
    --threads 1 --out "$run"
fi
[ -e "$artifact" ] || "$py" -m treefuse export "${export[@]}" --qat "$run" --keep-missed --out "$artifact" ||
  artifact=${artifact%.*}.missed.${artifact##*.}
cp "$run/qat.json" "$out/$name.$recipe-$f.qat.json"
for set in h5 fresh$f; do
  images=outputs/s7/$set; [ "$set" = h5 ] && images=../shared/data/heavy-rain-sample5
  "$py" -m treefuse parity --ref "torch:$weights" --cand "$kind:$artifact" --images "$images" --threads 1 \
    --json "$out/$name.parity-$recipe-$f-$set.json" | tail -3 || true
done
