#!/usr/bin/env bash
# Issue 13's measurements end to end, re-runnable: attacks and contributions are cached under
# bench-out/ and skipped when present. FRESH=1 drops those caches first (do that after the default
# attack changes). One torch thread throughout; about 40 min on an idle 2-core CPU with FRESH=1.
#   bash benchmarks/issue13_explain.sh            # PYTHON=/path/to/python to choose the interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD" OMP_NUM_THREADS=1
PY="${PYTHON:-python}"
if [ "${FRESH:-0}" = 1 ]; then
    rm -rf bench-out/explain-cache-devset bench-out/explain-cache bench-out/explain-rules
fi
[ -f bench-out/devset/manifest.csv ] || "$PY" benchmarks/devset.py --out bench-out/devset
# 1. attack every dev-set photo and the skimage crops once (default sparse attack, seed 0), 8-bit PNGs
"$PY" benchmarks/explain_photos.py attack --photos bench-out/devset --cache bench-out/explain-cache-devset
"$PY" benchmarks/explain_photos.py attack --crops --cache bench-out/explain-cache
# 2. contributions once per photo and split; every candidate labelling rule's group ablation
"$PY" benchmarks/explain_rules.py contributions
"$PY" benchmarks/explain_rules.py rules            # -> benchmarks/results/explain_rules_cpu.md/.csv
# 3. agreement of each attribution method with the default split (photos with >= 3 px)
"$PY" benchmarks/explain_rules.py maps --fresh     # -> benchmarks/results/explain_agreement_cpu.md/.json
# 4. the must-show table with the default rule: shares, pass rate, drops/rises, completeness, joint action
"$PY" benchmarks/explain_photos.py explain --cache bench-out/explain-cache-devset bench-out/explain-cache \
    --maps-limit 0 --shapley-max-pixels 40 --out benchmarks/results   # -> explain_contributions_cpu.md/.csv
# 5. seconds and model evaluations per explanation, default vs IG, dev-set attacks of up to 40 px
"$PY" benchmarks/explain_timing.py --cache bench-out/explain-cache-devset --max-pixels 40 \
    | tee benchmarks/results/explain_timing_cpu.txt
