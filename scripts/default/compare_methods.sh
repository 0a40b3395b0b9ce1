#!/usr/bin/env bash
# Every method on the built-in default benchmark with the same frontend, epochs, batch size,
# optimiser and seed (the quick preset), then one table into RESULTS.md (section "compare_methods").
# A method whose run directory already holds test_metrics.json is not re-run (the script resumes).
# Usage: bash scripts/default/compare_methods.sh [SEED] [extra train.py flags...]
# Env: METHODS (default "icl ce glmc ncl arb gh"), DATA (default data/xrd_mp_default),
#      OUT (run root, default Log/compare_methods_seed$SEED), RESULTS (default RESULTS.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
SEED=${1:-0}; [ $# -gt 0 ] && shift
METHODS=${METHODS:-"icl ce glmc ncl arb gh"}
DATA=${DATA:-data/xrd_mp_default}
OUT=${OUT:-Log/compare_methods_seed${SEED}}
RESULTS=${RESULTS:-RESULTS.md}
runs=()
for m in $METHODS; do
  if [ ! -f "$OUT/$m/test_metrics.json" ]; then
    python train.py --config quick --data_dir "$DATA" --method "$m" --seed "$SEED" \
        --run_dir "$OUT/$m" --resume auto "$@"
  fi
  runs+=("$OUT/$m")
done
python reports.py --title "All methods, $(basename "$DATA"), seed $SEED, quick preset $*" \
    --runs "${runs[@]}" --out "$RESULTS" --section compare_methods
