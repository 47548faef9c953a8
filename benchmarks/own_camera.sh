#!/usr/bin/env bash
# The real-footage workflow of docs/own-camera.md ("The demo's model on vtest.avi"),
# end to end with the CLI, on ../shared/data/vtest/vtest.avi (real pedestrians, nothing
# anomalous):
#
#   1. adapt the demo's proximity models (seeds 0-2) on the footage's first half and
#      count the frames of the UNMODIFIED second half inside an event, before and after;
#   2. inject synthetic anomalies into the footage (`synth --background`: training clips
#      from the first half, box-labelled test clips from the second) and score the
#      injected test clips with (a) the demo's models, (b) the adapted ones, (c) proximity
#      models fitted on the injected first half (weak labels, seeds 0-2) and (d) the motion
#      floor fitted on the same clips;
#   3. print one markdown table (frame AUC, TIoU, RBDC, patch AUC; mean ± std over seeds).
#
#   bash benchmarks/own_camera.sh DEMO_OUT WORK      # e.g. runs/demo /tmp/own_camera
#
# DEMO_OUT is a finished `patchvad demo` folder (models/proximity/seed{0,1,2}). Every
# step skips what WORK already holds, so a rerun continues.
set -euo pipefail
DEMO=${1:?usage: own_camera.sh DEMO_OUT WORK}
W=${2:?usage: own_camera.sh DEMO_OUT WORK}
VTEST=${VTEST:-../shared/data/vtest/vtest.avi}
PV=${PV:-.venv/bin/patchvad}
PY=${PY:-.venv/bin/python}
SEEDS=(0 1 2)
mkdir -p "$W"

# 1. false alarms on the unmodified second half, before and after adapting.
$PY benchmarks/adapt.py --work "$W" --vtest "$VTEST" > /dev/null      # cuts vtest_first.mp4 / vtest_second.mp4
for s in "${SEEDS[@]}"; do
  M=$DEMO/models/proximity/seed$s/model.safetensors
  [ -f "$W/adapted_s$s.safetensors" ] || $PV adapt --ckpt "$M" --normal "$W/vtest_first.mp4" \
      --out "$W/adapted_s$s.safetensors"
  [ -f "$W/before_s$s/predict.json" ] || $PV predict "$W/vtest_second.mp4" --ckpt "$M" --out "$W/before_s$s" --no-overlay
  [ -f "$W/after_s$s/predict.json" ] || $PV predict "$W/vtest_second.mp4" --ckpt "$W/adapted_s$s.safetensors" \
      --out "$W/after_s$s" --no-overlay
done

# 2. injected anomalies: 20 training clips from frames 0-397, 20 box-labelled test clips from 398-794.
[ -f "$W/inj/manifest.csv" ] || $PV synth --background "$VTEST" --out "$W/inj" --train 20 --test 20 --seed 0
$PV extract "$W/inj" --out "$W/inj_f" > /dev/null
score() {   # score NAME CKPT: test + evaluate on the injected test clips
  [ -f "$W/pred_$1/inference.json" ] || $PV test --ckpt "$2" --data "$W/inj" --features "$W/inj_f" --out "$W/pred_$1"
  $PV evaluate --dataset "$W/inj" --predictions "$W/pred_$1" --out "$W/metrics_$1.json" > /dev/null
}
for s in "${SEEDS[@]}"; do
  score demo_s$s "$DEMO/models/proximity/seed$s/model.safetensors"
  score adapted_s$s "$W/adapted_s$s.safetensors"
  [ -f "$W/fit_s$s/model.safetensors" ] || $PV fit --data "$W/inj" --features "$W/inj_f" --out "$W/fit_s$s" \
      --method proximity --seed "$s" --quiet
  score fitted_s$s "$W/fit_s$s/model.safetensors"
done
[ -f "$W/fit_floor/model.safetensors" ] || $PV fit --data "$W/inj" --features "$W/inj_f" --out "$W/fit_floor" \
    --method motion_floor --quiet
score floor "$W/fit_floor/model.safetensors"

# 3. the table.
$PY - "$W" <<'EOF'
import json, sys
from pathlib import Path
import numpy as np
w = Path(sys.argv[1])
def frac(d):
    p = json.loads((d / "vtest_second" / "events.json").read_text())
    n = sum(e["end_frame"] - e["start_frame"] + 1 for e in p["events"])
    return 100 * n / p["frame_count"], len(p["events"])
print("| seed | second half in events: demo model | after adapt |")
print("|---|---|---|")
for s in (0, 1, 2):
    (b, nb), (a, na) = frac(w / f"before_s{s}"), frac(w / f"after_s{s}")
    print(f"| {s} | {b:.1f}% ({nb} events) | {a:.1f}% ({na} events) |")
keys = [("frame_auc_micro", "frame AUC"), ("tiou", "TIoU"), ("rbdc", "RBDC"), ("pauc", "patch AUC")]
rows = [("(a) demo model", "demo_s{}"), ("(b) demo model, adapted", "adapted_s{}"),
        ("(c) fitted on injected first half", "fitted_s{}"), ("(d) motion floor", "floor")]
print()
print("| model | " + " | ".join(l for _, l in keys) + " |")
print("|---|" + "---|" * len(keys))
for label, pat in rows:
    files = [w / f"metrics_{pat.format(s)}.json" for s in (0, 1, 2)] if "{}" in pat else [w / f"metrics_{pat}.json"]
    ms = [json.loads(f.read_text()) for f in files]
    cells = []
    for k, _ in keys:
        v = np.array([m.get(k) if m.get(k) is not None else np.nan for m in ms], float)
        cells.append(f"{v.mean():.3f}" if len(v) == 1 else f"{v.mean():.3f} ± {v.std(ddof=1):.3f}")
    print(f"| {label} | " + " | ".join(cells) + " |")
EOF
