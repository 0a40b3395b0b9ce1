#!/usr/bin/env bash
# The long CPU recipe: ICL on new random crystals every epoch for about an hour on 2 cores (57 min
# measured; RESULTS.md, "The long recipe"). The quick preset's settings (the recipe of `python train.py`:
# new random crystals every epoch, log-d axis) with a longer cosine schedule (55 epochs, 440k
# patterns) and twice the width: in the 25-epoch default run the training loss stopped falling
# after ~15 epochs while the learning rate decayed (a capacity limit; at 5 epochs width 0.5 had not
# helped yet, RESULTS.md "pilots"). Snapshots for the learning curve at 200k and 400k patterns.
# Resumable: run the same command again after an interruption (--resume auto continues last.pt;
# the stream regenerates the same crystals), or split it over sessions with --stop_after_epoch N.
# Usage: bash scripts/default/long.sh [extra train.py flags...]
# Env: RUN (run directory, default Log/long_icl_stream), EPOCHS (default 55), WIDTH (default 0.5).
set -euo pipefail
cd "$(dirname "$0")/../.."
RUN=${RUN:-Log/long_icl_stream}
python train.py --config quick --method icl --epochs "${EPOCHS:-55}" --width_mult "${WIDTH:-0.5}" \
    --snapshot_patterns 200k,400k --run_dir "$RUN" --resume auto "$@"
