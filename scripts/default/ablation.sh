#!/usr/bin/env bash
# ICL ablations on the default recipe's budget with long-tailed training (as compare_methods.sh:
# quick preset, --stream_profile mp, the same generated crystals for every variant of a seed),
# one flag per variant, then one table into RESULTS.md (section "ablation"): SG top-1/top-5, CS,
# extinction group, macro-F1, many/medium/few (MP counts), lab rendering and real crystals.
# Base and variants are the method as published (--sg_logit_adjust 0, whatever the preset says)
# plus one change each; the base is OUT/seed<S>/base. Inference-time masking needs no training:
# every trained masking variant is also evaluated with the two other masks (test.py --mask_mode).
# Resumable: finished variants are not retrained.
# Usage: bash scripts/default/ablation.sh [SEED] [extra train.py flags...]
# Env: DATA (default data/xrd_mp_default), ONLY (variant names to train, in this order; default all),
#      OUT (default Log/ablation), RESULTS, CACHE (default Log/stream_cache).
set -euo pipefail
cd "$(dirname "$0")/../.."
SEED=${1:-0}; [ $# -gt 0 ] && shift
EXTRA=("$@")
# the stream's flags only when the data source is the stream: train.py refuses flags it would ignore
STREAM=(--stream_profile "mp" --stream_cache "${CACHE:-Log/stream_cache}")
case " $* " in *" --data_source files"*|*" --data_source=files"*) STREAM=() ;; esac
OUT=${OUT:-Log/ablation}/seed$SEED
BASE=$OUT/base
# name | row label | flags (one change each against the default ICL recipe)
VARIANTS=(
  "cs_la|system head: logit-adjusted CE (τ = 1)|--cs_logit_adjust 1"
  "sg_la|L_sg: logit-adjusted CE (τ = 1)|--sg_logit_adjust 1"
  "no_scl|without L_scl|--lambda_scl 0"
  "train_soft|training mask: soft|--train_mask_mode soft"
  "no_rule|rule prior off (gate prior strength 0)|--gate_prior_strength 0"
  "train_none|training mask: none|--train_mask_mode none"
  "experts4|4 experts (2 head, 2 tail)|--num_experts 4 --head_experts 0,1 --tail_experts 2,3"
  "no_col|without L_col|--disable_col"
  "no_dol|without L_dol|--lambda_dol 0"
  "original|original experts (own layer3 each)|--expert_mode original"
  "no_hier|without L_hier (L_sys + L_sg)|--lambda_hier 0"
  "tail_la|tail experts: logit-adjusted CE (τ_t = 2) instead of focal|--tail_logit_adjust 2"
)
train() {  # RUN_DIR [flags]
  local run=$1; shift
  [ -f "$run/test_metrics.json" ] || python train.py --data_dir "${DATA:-data/xrd_mp_default}" \
      --config quick --method icl --seed "$SEED" "${STREAM[@]}" \
      --run_dir "$run" --resume auto --sg_logit_adjust 0 \
      "$@" "${EXTRA[@]}"
  bash scripts/default/evaluate_run.sh "$run"
}
train "$BASE"
want=" ${ONLY:-$(for v in "${VARIANTS[@]}"; do printf '%s ' "${v%%|*}"; done)} "
for name in $want; do
  for v in "${VARIANTS[@]}"; do
    IFS='|' read -r n _ flags <<< "$v"
    # shellcheck disable=SC2086  # flags are words
    [ "$n" = "$name" ] && train "$OUT/$n" $flags
  done
done
rows=("ICL as published (train mask hard, inference mask hard)=$BASE:eval")
for run_mask in "$BASE|hard" "$OUT/train_soft|soft" "$OUT/train_none|none"; do
  run=${run_mask%%|*}; tm=${run_mask##*|}
  for im in hard soft none; do
    [ "$tm$im" = hardhard ] && continue                  # the first row
    sub=eval                                             # every run is trained with --mask_mode hard
    if [ "$im" != hard ]; then
      sub=eval_mask_$im
      [ -f "$run/best.pt" ] && bash scripts/default/evaluate_run.sh "$run" "$sub" --mask_mode "$im"
    fi
    rows+=("training mask $tm, inference mask $im=$run:$sub")
  done
done
for v in "${VARIANTS[@]}"; do
  IFS='|' read -r n label flags <<< "$v"
  case $n in train_soft|train_none) continue;; esac
  rows+=("$label (\`$flags\`)=$OUT/$n:eval")
done
args=(); for r in "${rows[@]}"; do args+=(--row "$r"); done
python reports_multi.py ablation "${args[@]}" --out "${RESULTS:-RESULTS.md}" --section ablation \
    --title "ICL ablations, long-tailed training (--stream_profile mp), seed $SEED"
