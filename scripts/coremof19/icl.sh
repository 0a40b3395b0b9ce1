#!/usr/bin/env bash
# ICL on the coremof19 NPY layout with the original documentation's recommended weights (docs/SEED_CLI.md):
# λ_dol 0.4, λ_hier 1.8, λ_scl 0.25, early_decay_ratio 0.1, early_decay_target_lr 5e-4.
# Usage: bash scripts/coremof19/icl.sh DATA_DIR [RULE_MATRIX.csv] [extra train.py flags...]
exec bash "$(dirname "$0")/../lib/icl_npy.sh" coremof19 0.4 1.8 0.25 0.1 5e-4 "$@"
