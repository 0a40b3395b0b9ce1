#!/usr/bin/env bash
# Evaluate one finished run the way the comparison and ablation tables read it: best.pt on the
# built-in test split (clean + lab rendering) and on the real crystals of data/external_pyxtal,
# with the many/medium/few groups of one count file for every run (the Materials Project
# frequencies of the default set's training split), into RUN/TAG/ and RUN/TAG/external_pyxtal/.
# Skips what is already there. Usage: bash scripts/default/evaluate_run.sh RUN [TAG] [test.py flags]
#   e.g. bash scripts/default/evaluate_run.sh Log/compare/seed0/icl eval_mask_soft --mask_mode soft
# Env: COUNTS (default data/xrd_mp_default/sg_count.csv), EXT (default data/external_pyxtal; set
#      to an empty string to skip the real crystals, e.g. in quick tests).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${1:?usage: $0 RUN [TAG] [test.py flags]}; TAG=${2:-eval}; shift; [ $# -gt 0 ] && shift
COUNTS=${COUNTS:-data/xrd_mp_default/sg_count.csv}
EXT=${EXT-data/external_pyxtal}
OUTD="$RUN/$TAG"
[ -f "$OUTD/test_metrics.json" ] || \
  python test.py --ckpt "$RUN/best.pt" --eval_counts_path "$COUNTS" --out_dir "$OUTD" "$@"
[ -z "$EXT" ] || [ -f "$OUTD/$(basename "$EXT")/test_metrics.json" ] || \
  python test.py --ckpt "$RUN/best.pt" --data_dir "$EXT" --eval_counts_path "$COUNTS" \
      --out_dir "$OUTD/$(basename "$EXT")" "$@"
