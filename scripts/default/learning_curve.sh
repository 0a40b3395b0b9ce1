#!/usr/bin/env bash
# One point of the learning-curve table of RESULTS.md (section "learning_curve"): train one recipe
# with snapshots at given numbers of patterns seen, evaluate every snapshot on the built-in test
# split (clean and lab-realistic rendering) and on the real crystals of data/external_pyxtal, then
# rewrite the table from every run under OUT. Resumable: re-running continues the training
# (--resume auto) and evaluates only snapshots not evaluated yet.
# Usage: bash scripts/default/learning_curve.sh NAME "LABEL" [train.py flags...]
#   e.g.  bash scripts/default/learning_curve.sh files "file data" --lattice_aug false --epochs 30
# Env: MARKS (default 50k,200k,1M), OUT (default Log/learning_curve), RESULTS (default RESULTS.md),
#      EXT (default data/external_pyxtal), COUNTS (training counts for many/medium/few on EXT).
set -euo pipefail
cd "$(dirname "$0")/../.."
NAME=${1:?usage: $0 NAME LABEL [train.py flags...]}; LABEL=${2:?usage: $0 NAME LABEL [train.py flags...]}
shift 2
MARKS=${MARKS:-50k,200k,1M}
OUT=${OUT:-Log/learning_curve}
EXT=${EXT:-data/external_pyxtal}
COUNTS=${COUNTS:-data/xrd_mp_default/sg_count.csv}
RUN="$OUT/$NAME"
if [ ! -f "$RUN/test_metrics.json" ]; then
  python train.py --run_dir "$RUN" --resume auto --snapshot_patterns "$MARKS" "$@"
fi
mkdir -p "$RUN/curve"
echo "$LABEL" > "$RUN/curve/label.txt"
# the end of the run is a point too (last.pt, named by its count of patterns seen)
last_seen=$(python -c "import torch,sys; print(torch.load(sys.argv[1], map_location='cpu', weights_only=True)['patterns_seen'])" "$RUN/last.pt")
[ -f "$RUN/seen_${last_seen}.pt" ] || cp "$RUN/last.pt" "$RUN/seen_${last_seen}.pt"
for ck in "$RUN"/seen_*.pt; do
  snap="$RUN/curve/$(basename "$ck" .pt)"
  [ -f "$snap/test_metrics.json" ] || python test.py --ckpt "$ck" --out_dir "$snap"
  [ -f "$snap/$(basename "$EXT")/test_metrics.json" ] || \
    python test.py --ckpt "$ck" --data_dir "$EXT" --sg_count_path "$COUNTS" --out_dir "$snap/$(basename "$EXT")"
done
python reports.py --curve --title "Learning curves, built-in default set" --runs "$OUT"/*/ \
    --out "${RESULTS:-RESULTS.md}" --section learning_curve
