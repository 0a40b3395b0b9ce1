#!/usr/bin/env bash
# ICL on the coremof19 NPY layout with the original documentation's recommended weights (SEED_CLI.md).
# Usage: bash scripts/coremof19/icl.sh DATA_DIR [RULE_MATRIX.csv] [extra train.py flags...]
#   DATA_DIR holds coremof19_sg_train/ and coremof19_sg_test/ in the framework's NPY format
#   (convert the original pickled files once: python -m datasets.convert_legacy --trust-pickle ...).
set -euo pipefail
DATA=${1:?usage: $0 DATA_DIR [RULE_MATRIX.csv] [flags...]}; shift
RULES="$DATA/rule_matrix.csv"
if [[ "${1:-}" == *.csv ]]; then RULES=$1; shift; fi
# Without a rule matrix file the framework's derived crystallographic matrix is used.
RULE_FLAG=(); [ -f "$RULES" ] && RULE_FLAG=(--rule_matrix_path "$RULES")
cd "$(dirname "$0")/../.."
python train.py --dataset coremof19 --use_processed_npy --processed_data_dir "$DATA" \
    "${RULE_FLAG[@]}" --device 0 \
    --loss_scheme scheme2 --use_contrast_scheme2 --use_adamw \
    --adjust_lr_strategy --lr_restart_enabled \
    --early_decay_ratio 0.1 --early_decay_target_lr 5e-4 \
    --lambda_dol 0.4 --lambda_hier 1.8 --lambda_scl 0.25 --max_grad_norm 1.0 \
    --epochs 100 --seed 42 --save_log True "$@"
