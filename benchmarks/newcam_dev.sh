#!/bin/bash
# New camera in every video: what generalizes (development sets only; docs/model.md,
# "New camera in every video: what generalizes (dev sets)").
#
#   benchmarks/newcam_dev.sh STAGE [STAGE ...]      stages: data main last valloss ref table | more check
#
# DEV (default /work/dev) holds the benchmarks, features, YAML configs and results;
# PY (default .venv/bin/python) runs patchvad. Everything is nice'd and at most JOBS (2)
# fits run at once (the development machine has 2 shared cores).
#
# What the first study ran (stages data, main, last, valloss, ref, table), cut to what the loaded machine
# allowed: newcam benchmark seed 101 generated at 240/60, of which the first 76 training
# and 40 test videos were extracted in time (subset "nc116"); 100 training steps with a
# validation every 25 (not the default 600 / 50), defaults vs scene_dims 0 + motion_context
# off, 3 seeds each, the motion floor, plain top-k and the oracle. Stages `more` (the
# other one-factor settings) and `check` (a second newcam draw, seed 103, and the
# fixed-camera preset, seed 102) are written but were not run. None of these benchmarks
# is a reported test split.
set -euo pipefail
DEV=${DEV:-/work/dev}
PY=${PY:-.venv/bin/python}
JOBS=${JOBS:-2}
PV="nice -n 5 $PY -m patchvad"
SEEDS="0 1 2"
mkdir -p "$DEV/cfg"

configs() {
  # One factor at a time against the defaults; every file trains 100 steps, validating every 25.
  local short='train:\n  steps: 100\n  eval_every: 25\n'
  printf "$short" > "$DEV/cfg/base100.yaml"
  printf "model:\n  scene_dims: 0\n  motion_context: false\n$short" > "$DEV/cfg/c100.yaml"
  printf "model:\n  scene_dims: 0\n$short" > "$DEV/cfg/a100.yaml"
  printf "model:\n  motion_context: false\n$short" > "$DEV/cfg/b100.yaml"
  printf "model:\n  scene_dims: 0\n  motion_context: false\n  scene_token: false\n$short" > "$DEV/cfg/e100.yaml"
  printf "model:\n  correction_bound: 2.0\n$short" > "$DEV/cfg/bound100.yaml"
}

subset() {  # subset SRC DST NTRAIN NTEST: the first NTRAIN training and NTEST test rows of SRC (hard links)
  mkdir -p "$DEV/$2"
  $PY - "$DEV/$1" "$DEV/$2" "$3" "$4" <<'PYEOF'
import csv, sys
src, dst, n_tr, n_te = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = list(csv.reader(open(f"{src}/manifest.csv")))
tr = [r for r in rows[1:] if r[1] == "train"][:n_tr]
te = [r for r in rows[1:] if r[1] == "test"][:n_te]
with open(f"{dst}/manifest.csv", "w", newline="") as fh:
    csv.writer(fh).writerows([rows[0], *tr, *te])
PYEOF
  for d in videos frame_labels tracks; do [ -e "$DEV/$2/$d" ] || cp -al "$DEV/$1/$d" "$DEV/$2/$d"; done
  cp "$DEV/$1/synth.json" "$DEV/$2/"
  ln -sfn "${1}_oracle" "$DEV/${2}_oracle"
}

data() {
  # extract skips finished videos, so a larger subset (or the whole nc240) can be
  # extracted later into the same folder.
  $PV synth "$DEV/nc240" --preset newcam --train 240 --test 60 --seed 101 --workers 2 --oracle-labels "$DEV/nc240_oracle"
  subset nc240 nc116 76 40
  $PV extract "$DEV/nc116" --out "$DEV/nc240_f"
  ln -sfn nc240_f "$DEV/nc116_f"
}

queue() {  # queue SET ITEM...: benchmarks/newcam_queue.py, ITEM = OUTNAME:METHOD:SEED:CFGNAME
  local set=$1; shift
  local items=()
  for it in "$@"; do
    IFS=: read -r out method seed cfg <<< "$it"
    items+=("$DEV/$out:$method:$seed:$DEV/cfg/$cfg.yaml")
  done
  nice -n 5 $PY benchmarks/newcam_queue.py --data "$DEV/$set" --features "$DEV/${set}_f" \
    --oracle-labels "$DEV/${set}_oracle" --jobs "$JOBS" "${items[@]}"
}

main_queue() {  # defaults vs (c) scene_dims 0 + motion_context off, seed by seed; then the floor
  local items=()
  for s in $SEEDS; do items+=("exp_nc116_base100:proximity:$s:base100" "exp_nc116_c100:proximity:$s:c100"); done
  items+=("exp_nc116_base100:motion_floor:0:base100")
  queue nc116 "${items[@]}"
}

more_queue() {  # not run yet: the single factors, no scene token, a bounded correction
  local items=()
  for v in a100 b100 e100 bound100; do for s in $SEEDS; do items+=("exp_nc116_$v:proximity:$s:$v"); done; done
  queue nc116 "${items[@]}"
}

last() {  # every proximity run's LAST checkpoint (step 100) tested too: what training learned, selection aside
  local exp run s
  for exp in exp_nc116_base100 exp_nc116_c100; do
    mkdir -p "$DEV/$exp/last"
    for s in $SEEDS; do
      run=$DEV/$exp/proximity_s$s
      $PV test --ckpt "$run/checkpoints/step_000100.safetensors" --data "$DEV/nc116" --features "$DEV/nc116_f" \
        --out "$DEV/$exp/last/pred_proximity_s$s"
      $PV evaluate --dataset "$DEV/nc116" --predictions "$DEV/$exp/last/pred_proximity_s$s" \
        --out "$DEV/$exp/last/metrics_proximity_s$s.json" > /dev/null
    done
  done
}

valloss() {  # train.select: val_loss after the fact: the lowest validation loss was step 25 in every defaults run
  local s
  mkdir -p "$DEV/exp_nc116_base100/valloss"
  for s in $SEEDS; do
    $PV test --ckpt "$DEV/exp_nc116_base100/proximity_s$s/checkpoints/step_000025.safetensors" --data "$DEV/nc116" \
      --features "$DEV/nc116_f" --out "$DEV/exp_nc116_base100/valloss/pred_proximity_s$s"
    $PV evaluate --dataset "$DEV/nc116" --predictions "$DEV/exp_nc116_base100/valloss/pred_proximity_s$s" \
      --out "$DEV/exp_nc116_base100/valloss/metrics_proximity_s$s.json" > /dev/null
  done
}

ref_queue() {  # the reference rows under the same 100 steps: plain top-k and the supervised oracle
  local items=()
  for s in $SEEDS; do items+=("exp_nc116_base100:plain_topk:$s:base100" "exp_nc116_oracle100:oracle:$s:base100"); done
  queue nc116 "${items[@]}"
}

table() {
  $PY benchmarks/newcam_summary.py "defaults=$DEV/exp_nc116_base100" \
    "scene_dims 0 + motion_context off=$DEV/exp_nc116_c100" \
    "defaults, step 100=$DEV/exp_nc116_base100/last" "scene_dims 0 + motion_context off, step 100=$DEV/exp_nc116_c100/last" \
    "defaults, lowest val loss (step 25)=$DEV/exp_nc116_base100/valloss" "oracle=$DEV/exp_nc116_oracle100"
}

check() {  # not run yet: a second newcam draw and the fixed-camera preset, 120/30 each
  $PV synth "$DEV/nc103" --preset newcam --train 120 --test 30 --seed 103 --workers 2 --oracle-labels "$DEV/nc103_oracle"
  $PV extract "$DEV/nc103" --out "$DEV/nc103_f"
  $PV synth "$DEV/def102" --preset default --train 120 --test 30 --seed 102 --workers 2
  $PV extract "$DEV/def102" --out "$DEV/def102_f"
  local a=() b=()
  for s in $SEEDS; do
    a+=("exp_nc103_base100:proximity:$s:base100" "exp_nc103_c100:proximity:$s:c100")
    b+=("exp_def102_base100:proximity:$s:base100" "exp_def102_c100:proximity:$s:c100")
  done
  queue nc103 "${a[@]}" "exp_nc103_base100:motion_floor:0:base100"
  queue def102 "${b[@]}" "exp_def102_base100:motion_floor:0:base100"
}

for stage in "$@"; do
  case $stage in
    data) data ;;
    main) configs; main_queue ;;
    more) configs; more_queue ;;
    last) last ;;
    valloss) valloss ;;
    ref) configs; ref_queue ;;
    table) table ;;
    check) configs; check ;;
    *) echo "unknown stage $stage (data main last valloss ref table more check)" >&2; exit 2 ;;
  esac
done
