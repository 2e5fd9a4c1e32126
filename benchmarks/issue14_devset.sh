#!/usr/bin/env bash
# The development-set numbers of issue 14, on the CPU (results: benchmarks/results/issue14/).
# Usage: benchmarks/issue14_devset.sh BASELINE_TREE [OUT_DIR]
#   BASELINE_TREE: a checkout of the code before the change, e.g.
#     git worktree add --detach /tmp/base e8ed1b1
# Two single-threaded streams run side by side (one per core), so their seconds share one load:
#   1. one `sparseviz bench` run: sparse vs greedy, Sparse-RS, PGD-l0 and SparseFool (authors'
#      settings) on the whole dev set (41 photos), batch 1, untargeted;
#   2. sparse targeted to a seeded random class, new and baseline, the whole dev set; sparse at
#      --batch-size 32 on the first 32 photos (sequential invocations per image); then the
#      back-to-back A/B of the default attack, new vs baseline, photo by photo.
set -euo pipefail
cd "$(dirname "$0")/.."
base="$(realpath "$1")"
out="$(realpath -m "${2:-bench-out/i14}")"
py="${PYTHON:-python}"
[ -f bench-out/devset/manifest.csv ] || "$py" benchmarks/devset.py --out bench-out/devset
mkdir -p "$out"
here="$PWD"
# Run from inside the tree: `python -c` puts the working directory ahead of PYTHONPATH on sys.path.
bench() { (cd "$1" && PYTHONPATH="$1" "$py" -c 'import sys; from sparseviz.cli import main; sys.exit(main(sys.argv[1:]))' \
  bench --model efficientnet_lite0 --threads 1 --device cpu --quiet --images "$here/bench-out/devset" "${@:2}"); }
bench "$PWD" --attacks sparse,greedy,sparse_rs,pgd0,sparsefool --out "$out/all" > "$out/all.log" 2>&1 &
{
  bench "$PWD" --attacks sparse --targeted --out "$out/targeted"
  bench "$base" --attacks sparse --targeted --out "$out/baseline-targeted"
  bench "$PWD" --attacks sparse --batch-size 32 --limit 32 --out "$out/b32"
  "$py" benchmarks/ab_trees.py "$base" . --photos bench-out/devset --limit 41
} > "$out/second.log" 2>&1 &
wait
