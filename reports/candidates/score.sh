#!/usr/bin/env bash
# Score candidate weights on the model card's four sets (rule clauses (a)-(c)), once, as every candidate since
# issue 23 was scored: J3 particle judge, J2 JORDER judge, J1 training renderer (the 14 judge road frames of
# ../shared/data/street-clean, rendered here if missing: the renderers are seeded), H5 heavy-rain-sample5.
#   reports/candidates/score.sh NAME WEIGHTS [OUT_DIR]    -> OUT_DIR (default reports/candidates/scores)/NAME.{street-judge14-particle,...,h5}.json
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 2 ] || { echo "usage: reports/candidates/score.sh NAME WEIGHTS [OUT_DIR]" >&2; exit 2; }
name=$1 weights=$2 out=${3:-reports/candidates/scores}
py=${PYTHON:-.venv/bin/python}
for renderer in particle judge depth; do
  [ -d "outputs/street-judge14-$renderer" ] ||
    "$py" -m treefuse.train.street_holdout --street judge --renderer "$renderer" --out "outputs/street-judge14-$renderer" >/dev/null
done
score() {  # score SET_DIR SUFFIX
  "$py" -m treefuse evaluate --backend "torch:$weights" --data "$1" --threads 1 --json "$out/$name.$2.json" >/dev/null
  "$py" -c "import json,sys; m=json.load(open(sys.argv[1]))['mean']; print(f\"{sys.argv[2]:<26} Y-PSNR {m['psnr_y_db']:.3f} dB  Y-SSIM {m['ssim_y']:.3f}\")" "$out/$name.$2.json" "$2"
}
score outputs/street-judge14-particle street-judge14-particle   # J3
score outputs/street-judge14-judge street-judge14-judge         # J2
score outputs/street-judge14-depth street-judge14-depth         # J1
score ../shared/data/heavy-rain-sample5 h5                      # H5
