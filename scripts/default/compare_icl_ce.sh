#!/usr/bin/env bash
# ICL vs plain cross-entropy on the built-in default benchmark: same frontend, epochs, batch size,
# optimiser and seed. Writes results/compare_icl_ce.md (a table) and prints it.
# Usage: bash scripts/default/compare_icl_ce.sh [SEED] [extra train.py flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
SEED=${1:-0}; [ $# -gt 0 ] && shift
OUT=Log/compare_icl_ce_seed${SEED}
mkdir -p "$OUT" results
for m in icl ce; do
  python train.py --config quick --data_dir data/xrd_mp_default --method "$m" --seed "$SEED" \
      --run_dir "$OUT/$m" "$@"
done
python reports.py --title "ICL vs CE, built-in default set, seed $SEED" \
    --runs "$OUT/icl" "$OUT/ce" --out results/compare_icl_ce.md
cat results/compare_icl_ce.md
