#!/usr/bin/env bash
# ICL on the inor NPY layout with the original documentation's recommended weights (docs/SEED_CLI.md):
# λ_dol 0.5, λ_hier 1.2, λ_scl 0.15, early_decay_ratio 0.2, early_decay_target_lr 1e-3.
# Usage: bash scripts/inor/icl.sh DATA_DIR [RULE_MATRIX.csv] [extra train.py flags...]
exec bash "$(dirname "$0")/../lib/icl_npy.sh" inor 0.5 1.2 0.15 0.2 1e-3 "$@"
