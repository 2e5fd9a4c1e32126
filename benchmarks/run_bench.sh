#!/usr/bin/env bash
# Reproduce the table in benchmarks/README.md: every attack side by side on the bundled
# photos, EfficientNet-Lite0, untargeted, transfer to EfficientNet-Lite1, on the CPU.
# Usage: benchmarks/run_bench.sh [OUT_DIR] [extra sparseviz bench options...]
# Takes about half an hour on a 2-core CPU; progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-benchmarks/out/lite0_untargeted}"
shift || true
# One torch thread: on a shared 2-core machine two threads contend with other work and
# run ~3x slower per forward pass; the same setting applies to every attack.
exec sparseviz bench \
  --images sparseviz/assets \
  --model efficientnet_lite0 \
  --attacks sparse,sparsefool,pgd0,sparse_rs,jsma,greedy,pgd,fgsm \
  --transfer efficientnet_lite1 \
  --set sparsefool.max_seconds=180 --set jsma.max_seconds=90 \
  --threads 1 \
  --device cpu \
  --out "$out" "$@"
