#!/usr/bin/env bash
# The issue-24 numbers on the real-photo development set (results: benchmarks/results/issue24/).
# Usage: benchmarks/issue24_devset.sh DEV_SET BASELINE_TREE [OUT_DIR]
#   DEV_SET: ../shared/imagenet-dev (120 ImageNet photos with manifest.csv; never copied here)
#   BASELINE_TREE: the code before the change, e.g. git worktree add --detach /tmp/base 0046d33
# Subset: every 4th photo in file order (30: 20 high, 8 mid, 2 low) for the slower baselines and
# the best-known runs; the default attack runs on all 120. One torch thread per run.
set -euo pipefail
cd "$(dirname "$0")/.."
dev="$(realpath "$1")"; base="$(realpath "$2")"; out="$(realpath -m "${3:-bench-out/i24}")"
py="${PYTHON:-python}"
# subset DIR START STEP: symlinks to every STEP-th photo from START, in file order
subset() {
  mkdir -p "$1"
  "$py" - "$dev" "$@" <<'PY'
import csv, os, sys
dev, sub, start, step = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rows = sorted(csv.DictReader(open(os.path.join(dev, "manifest.csv"))), key=lambda r: r["file"])
for row in rows[start::step]:
    target = os.path.join(sub, row["file"])
    if not os.path.exists(target):
        os.symlink(os.path.join(dev, row["file"]), target)
PY
}
subset "$out/dev30" 1 4
subset "$out/dev12" 0 10   # every 10th photo (8 high, 4 mid): all five attacks in one run
# Run from inside a tree: `python -c` puts the working directory ahead of the installed package.
bench() { (cd "$1" && "$py" -c 'import sys; from sparseviz.cli import main; sys.exit(main(sys.argv[1:]))' \
  bench --model efficientnet_lite0 --threads 1 --device cpu --quiet "${@:2}"); }
here="$PWD"
bench "$here" --images "$dev" --attacks sparse --out "$out/sparse120"
bench "$here" --images "$out/dev30" --attacks greedy --out "$out/greedy30"
bench "$here" --images "$out/dev30" --limit 12 --attacks pgd0,sparse_rs,sparsefool --out "$out/others12"
# Best-known: long runs of the sparse attack (3x the steps, patience 30, 8 refine cycles, 5x the swaps).
for seed in 1 2; do
  bench "$here" --images "$out/dev30" --attacks sparse --set sparse.steps=300 --set sparse.seed=$seed \
    --set sparse.tuning.patience=30 --set sparse.tuning.refine_cycles=8 --set sparse.tuning.swap_calls=600 \
    --set sparse.tuning.swap_rounds=6 --out "$out/long_s$seed"
done
bench "$here" --images "$out/dev30" --limit 15 --attacks sparse --targeted --out "$out/targeted15"
bench "$here" --images "$out/dev12" --attacks sparse,greedy,sparse_rs,pgd0,sparsefool --out "$out/five12"
bench "$here" --images "$out/dev12" --attacks sparse --targeted --out "$out/targeted12"
for seed in 1 2; do
  bench "$here" --images "$out/dev12" --attacks sparse --set sparse.steps=300 --set sparse.seed=$seed \
    --set sparse.tuning.patience=30 --set sparse.tuning.refine_cycles=8 --set sparse.tuning.swap_calls=600 \
    --set sparse.tuning.swap_rounds=6 --out "$out/long12_s$seed"
done
# batch 32 ran at 2 threads (a later --threads overrides the helper's)
bench "$here" --images "$dev" --limit 32 --batch-size 32 --threads 2 --attacks sparse --out "$out/b32"
bench "$base" --images "$dev" --attacks sparse --out "$out/baseline120"
"$py" benchmarks/ab_trees.py "$base" . --photos "$dev" --limit 12
"$py" benchmarks/optimality.py "$out/five12/results.csv" long_s1="$out/long12_s1/results.csv" \
  long_s2="$out/long12_s2/results.csv" --best-known benchmarks/results/issue24/best_known_lite0_devset.csv --update
"$py" benchmarks/optimality.py sparse120="$out/sparse120/results.csv" "$out/greedy30/results.csv" \
  "$out/others12/results.csv" long_s1="$out/long_s1/results.csv" long_s2="$out/long_s2/results.csv" \
  baseline="$out/baseline120/results.csv" --best-known benchmarks/results/issue24/best_known_lite0_devset.csv --update
