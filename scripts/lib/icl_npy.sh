#!/usr/bin/env bash
# The seed's recommended ICL command on an NPY layout, with per-dataset weights (docs/SEED_CLI.md).
# Called by scripts/{ccdc,coremof19,inor}/icl.sh; not meant to be run directly.
# Usage: icl_npy.sh NAME LAMBDA_DOL LAMBDA_HIER LAMBDA_SCL DECAY_RATIO DECAY_TARGET_LR DATA_DIR \
#        [RULE_MATRIX.csv] [extra train.py flags...]
#   DATA_DIR holds NAME_sg_train/ and NAME_sg_test/ in the framework's NPY format (convert the
#   original pickled files once: python -m datasets.readers.convert_legacy --trust-pickle ...).
set -euo pipefail
NAME=$1 DOL=$2 HIER=$3 SCL=$4 RATIO=$5 TARGET=$6; shift 6
DATA=${1:?usage: bash scripts/$NAME/icl.sh DATA_DIR [RULE_MATRIX.csv] [flags...]}; shift
RULES="$DATA/rule_matrix.csv"
if [[ "${1:-}" == *.csv ]]; then RULES=$1; shift; fi
# Without a rule matrix file the framework's derived crystallographic matrix is used.
RULE_FLAG=(); [ -f "$RULES" ] && RULE_FLAG=(--rule_matrix_path "$RULES")
cd "$(dirname "$0")/../.."
python train.py --dataset "$NAME" --use_processed_npy --processed_data_dir "$DATA" \
    "${RULE_FLAG[@]}" --device 0 \
    --loss_scheme scheme2 --use_contrast_scheme2 --use_adamw \
    --adjust_lr_strategy --lr_restart_enabled \
    --early_decay_ratio "$RATIO" --early_decay_target_lr "$TARGET" \
    --lambda_dol "$DOL" --lambda_hier "$HIER" --lambda_scl "$SCL" --max_grad_norm 1.0 \
    --epochs 100 --seed 42 --save_log True "$@"
