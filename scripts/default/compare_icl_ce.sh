#!/usr/bin/env bash
# ICL vs plain cross-entropy on the built-in default benchmark: same frontend, epochs, batch size,
# optimiser and seed (the quick preset). Each best.pt is also evaluated on the real crystals of
# data/external_pyxtal. Both tables go into RESULTS.md (sections "icl_vs_ce", "icl_vs_ce_external").
# Usage: bash scripts/default/compare_icl_ce.sh [SEED] [extra train.py flags...]
set -euo pipefail
cd "$(dirname "$0")/../.."
SEED=${1:-0}; [ $# -gt 0 ] && shift
OUT=${OUT:-Log/compare_icl_ce_seed${SEED}}
RESULTS=${RESULTS:-RESULTS.md}
for m in icl ce; do
  if [ ! -f "$OUT/$m/test_metrics.json" ]; then
    python train.py --config quick --data_dir data/xrd_mp_default --method "$m" --seed "$SEED" \
        --run_dir "$OUT/$m" --resume auto "$@"
  fi
  python test.py --ckpt "$OUT/$m/best.pt" --data_dir data/external_pyxtal \
      --sg_count_path data/xrd_mp_default/sg_count.csv --out_dir "$OUT/$m/external_pyxtal"
done
python reports.py --title "ICL vs CE, built-in default test split, seed $SEED" \
    --runs "$OUT/icl" "$OUT/ce" --out "$RESULTS" --section icl_vs_ce
python reports.py --title "ICL vs CE, real crystals never seen (data/external_pyxtal, 89 structures), seed $SEED" \
    --runs "$OUT/icl" "$OUT/ce" --metrics_subdir external_pyxtal --out "$RESULTS" --section icl_vs_ce_external
