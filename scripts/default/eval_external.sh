#!/usr/bin/env bash
# Evaluate finished runs on the real crystals of data/external_pyxtal (never seen in training) and
# write one table into RESULTS.md (section given by SECTION, default "external").
# Usage: bash scripts/default/eval_external.sh TITLE RUN_DIR [RUN_DIR...]
# Env: RESULTS (default RESULTS.md), SECTION, EXT (default data/external_pyxtal),
#      COUNTS (training counts for many/medium/few, default data/xrd_mp_default/sg_count.csv).
set -euo pipefail
cd "$(dirname "$0")/../.."
TITLE=${1:?usage: $0 TITLE RUN_DIR [RUN_DIR...]}; shift
EXT=${EXT:-data/external_pyxtal}
COUNTS=${COUNTS:-data/xrd_mp_default/sg_count.csv}
SUB=$(basename "$EXT")
for run in "$@"; do
  if [ ! -f "$run/$SUB/test_metrics.json" ]; then
    python test.py --ckpt "$run/best.pt" --data_dir "$EXT" --sg_count_path "$COUNTS" --out_dir "$run/$SUB"
  fi
done
python reports.py --title "$TITLE" --runs "$@" --metrics_subdir "$SUB" \
    --out "${RESULTS:-RESULTS.md}" --section "${SECTION:-external}"
