#!/usr/bin/env bash
# The development-set numbers of issue 14 (closing note: /work/notes/issue-14.md), on the CPU.
# Usage: benchmarks/issue14_devset.sh BASELINE_TREE [OUT_DIR]
#   BASELINE_TREE: a checkout of the code before the change, e.g.
#     git worktree add --detach /tmp/base e8ed1b1
# All runs start at once, one torch thread each, so the new and the baseline attack share
# the machine's load and their seconds can be compared as ratios:
#   - sparse, new and baseline, the whole dev set (41 photos), batch 1;
#   - every sparse attack on 6 photos (2 per confidence band; SparseFool with the authors' settings);
#   - sparse at --batch-size 32 on the first 32 photos (sequential invocations per image);
#   - targeted to a seeded random class, new and baseline, the same 6 photos.
set -euo pipefail
cd "$(dirname "$0")/.."
base="$1"
out="${2:-bench-out/i14}"
py="${PYTHON:-python}"
"$py" benchmarks/devset.py --out bench-out/devset
"$py" - <<'PICK'
import csv, shutil
from pathlib import Path
# 2 photos per band, spread over each band's files in name order (chosen without running any attack).
src, dst = Path("bench-out/devset"), Path("bench-out/devset6")
dst.mkdir(parents=True, exist_ok=True)
rows = list(csv.DictReader(open(src / "manifest.csv")))
chosen = []
for band in ("high", "mid", "low"):
    inband = [r for r in rows if r["band"] == band]
    chosen += [inband[int(i * len(inband) / 4)] for i in (0, 2)]
for r in chosen:
    shutil.copy(src / r["file"], dst / r["file"])
with open(dst / "manifest.csv", "w", newline="") as handle:
    writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(chosen)
PICK
bench() { PYTHONPATH="$1" "$py" -c 'import sys; from sparseviz.cli import main; sys.exit(main(sys.argv[1:]))' bench \
  --model efficientnet_lite0 --threads 1 --device cpu --quiet "${@:2}"; }
bench "$PWD" --images bench-out/devset --attacks sparse --out "$out/sparse-b1" &
bench "$base" --images bench-out/devset --attacks sparse --out "$out/baseline-sparse-b1" &
bench "$PWD" --images bench-out/devset6 --attacks sparse,greedy,sparse_rs,pgd0,sparsefool --out "$out/all-6" &
bench "$PWD" --images bench-out/devset --limit 32 --attacks sparse --batch-size 32 --out "$out/sparse-b32" &
bench "$PWD" --images bench-out/devset6 --attacks sparse --targeted --out "$out/sparse-targeted-6" &
bench "$base" --images bench-out/devset6 --attacks sparse --targeted --out "$out/baseline-sparse-targeted-6" &
wait
