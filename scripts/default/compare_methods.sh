#!/usr/bin/env bash
# Every method on the default recipe's budget (the quick preset: ResTcn-Lite w0.25, log-d axis,
# 25 epochs of 1,000 new crystals x 8 renderings) with a LONG-TAILED training profile
# (--stream_profile mp: space groups in Materials Project proportions), for several seeds; each
# run evaluated by evaluate_run.sh (test split clean + lab, real crystals, shot groups by the MP
# counts), then one table of mean +- sd into RESULTS.md (section "compare_methods") and one figure
# of per-class accuracy against training count for all methods.
# Resumable: a finished run (best.pt + test_metrics.json) is not retrained, an interrupted one
# continues (--resume auto); runs of one seed share their generated crystals (--stream_cache).
# Usage: bash scripts/default/compare_methods.sh [SEEDS] [extra train.py flags...]   SEEDS: "0,1,2"
# Env: METHODS (default "icl ce glmc ncl arb gh"), DATA (default data/xrd_mp_default), OUT (run
#      root, default Log/compare: OUT/seed<S>/<method>), RESULTS (default RESULTS.md), PROFILE
#      (default mp), CACHE (default Log/stream_cache), PLOT (default docs/figures/per_class_methods.png).
set -euo pipefail
cd "$(dirname "$0")/../.."
SEEDS=${1:-0,1,2}; [ $# -gt 0 ] && shift
METHODS=${METHODS:-"icl ce glmc ncl arb gh"}
DATA=${DATA:-data/xrd_mp_default}
OUT=${OUT:-Log/compare}
RESULTS=${RESULTS:-RESULTS.md}
PLOT=${PLOT:-docs/figures/per_class_methods.png}
# the stream's flags only when the data source is the stream: train.py refuses flags it would ignore
STREAM=(--stream_profile "${PROFILE:-mp}" --stream_cache "${CACHE:-Log/stream_cache}")
case " $* " in *" --data_source files"*|*" --data_source=files"*) STREAM=() ;; esac
for seed in ${SEEDS//,/ }; do
  for m in $METHODS; do
    run="$OUT/seed$seed/$m"
    if [ ! -f "$run/test_metrics.json" ]; then
      python train.py --data_dir "$DATA" --config quick --method "$m" --seed "$seed" \
          "${STREAM[@]}" --run_dir "$run" --resume auto "$@"
    fi
    bash scripts/default/evaluate_run.sh "$run"
  done
done
python reports_multi.py seeds --root "$OUT" --methods $METHODS --seeds ${SEEDS//,/ } --plot "$PLOT" \
    --title "All methods, long-tailed training ($(basename "$DATA"), --stream_profile ${PROFILE:-mp}), seeds $SEEDS${*:+ $*}" \
    --out "$RESULTS" --section compare_methods
