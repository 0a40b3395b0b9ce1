#!/usr/bin/env bash
# The long recipe (long.sh: width 0.5, 55 epochs = 440,000 patterns) on LONG-TAILED training
# (--stream_profile mp, as in compare_methods.sh) for ICL and the best tail baseline of the
# three-seed comparison (NCL), one seed each; each run evaluated by evaluate_run.sh (test split
# clean + lab, real crystals, shot groups by the MP counts), then one table into RESULTS.md
# (section "long_mp"). Runs that have not finished show as "not run yet".
# Resumable: a finished run (test_metrics.json) is not retrained, an interrupted one continues
# (--resume auto); the methods share one seed's generated crystals (--stream_cache), so the first
# run generates them beside training (ICL: ~112 s per epoch on 2 cores) and the next reads them.
# Split over sessions: METHODS=icl bash scripts/default/long_mp.sh, later METHODS=ncl ...
# Usage: bash scripts/default/long_mp.sh [extra train.py flags...]
# Env: METHODS (default "icl ncl"), OUT (default Log/long_mp: OUT/<method>), CACHE (default
#      Log/stream_cache), RESULTS (default RESULTS.md), EPOCHS / WIDTH (as in long.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-Log/long_mp}
# the stream's flags only when the data source is the stream: train.py refuses flags it would ignore
STREAM=(--stream_profile "mp" --stream_cache "${CACHE:-Log/stream_cache}")
case " $* " in *" --data_source files"*|*" --data_source=files"*) STREAM=() ;; esac
for m in ${METHODS:-icl ncl}; do
  run="$OUT/$m"
  [ -f "$run/test_metrics.json" ] || RUN="$run" bash scripts/default/long.sh --method "$m" \
      "${STREAM[@]}" "$@"
  bash scripts/default/evaluate_run.sh "$run"
done
rows=()
for m in icl ncl; do rows+=(--row "$m=$OUT/$m:eval"); done
python reports_multi.py ablation "${rows[@]}" --out "${RESULTS:-RESULTS.md}" --section long_mp \
    --title "The long recipe on long-tailed training (--stream_profile mp), seed 42${*:+, $*}"
