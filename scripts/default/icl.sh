#!/usr/bin/env bash
# ICL on the built-in default benchmark (data/xrd_mp_default) with the quick CPU recipe
# (config/presets/quick.yaml). Extra flags are passed to train.py, e.g. --epochs 30 --width_mult 0.5.
set -euo pipefail
cd "$(dirname "$0")/../.."
python train.py --config quick --data_dir data/xrd_mp_default --method icl "$@"
