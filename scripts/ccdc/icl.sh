#!/usr/bin/env bash
# ICL on the ccdc NPY layout with the original documentation's recommended weights (docs/SEED_CLI.md):
# λ_dol 0.5, λ_hier 1.5, λ_scl 0.2, early_decay_ratio 0.2, early_decay_target_lr 1e-3.
# Usage: bash scripts/ccdc/icl.sh DATA_DIR [RULE_MATRIX.csv] [extra train.py flags...]
exec bash "$(dirname "$0")/../lib/icl_npy.sh" ccdc 0.5 1.5 0.2 0.2 1e-3 "$@"
