#!/usr/bin/env bash
# The GPU recipe: ICL on the built-in benchmark's val/test splits with new random crystals every
# epoch, sized for one modern GPU and a machine with ~16 CPU cores for a few hours.
#
# Why these settings (evidence: the CPU learning curve in RESULTS.md, section "learning_curve"):
# - on-the-fly crystals of a balanced space-group profile generalise to unseen structures where the
#   4,464 fixed training structures are memorised; the log-d input axis learns faster per pattern
#   than the 2θ axis at equal cost;
# - on a GPU the network is no longer the bottleneck, generation is (one CPU process makes ~20–30
#   crystals/s): STREAM_WORKERS generation processes, each crystal reused REUSE times in new
#   strained cells (lattice augmentation), DataLoader workers render the patterns;
# - a wider frontend (width 1.0 = the seed's channel widths) and a larger batch, bf16 autocast.
# Not run on a GPU yet (no device was lent to the session that wrote it): check patterns/s in the
# first epoch's progress line and the stream's "training waited" line; if training waits for
# generation, raise REUSE or STREAM_WORKERS.
# Usage: bash scripts/default/gpu.sh [extra train.py flags...]   (resumable: --resume auto)
# Env: DEVICE (default 0), STREAM_WORKERS (default: CPU cores - 4), EPOCHS (default 120),
#      STRUCTURES (crystals per epoch, default 20000), REUSE (default 8), RUN (run directory).
set -euo pipefail
cd "$(dirname "$0")/../.."
CORES=$(python -c "import os; print(len(os.sched_getaffinity(0)))")
STREAM_WORKERS=${STREAM_WORKERS:-$(( CORES > 6 ? CORES - 4 : 2 ))}
RUN=${RUN:-Log/gpu_icl_stream}
python train.py --config quick --method icl --device "${DEVICE:-0}" \
    --data_source stream --stream_profile balanced --stream_workers "$STREAM_WORKERS" \
    --stream_structures "${STRUCTURES:-20000}" --stream_reuse "${REUSE:-8}" \
    --input_axis log_d --width_mult 1.0 --batch_size 256 --lr 2e-3 --warmup_epochs 2 \
    --epochs "${EPOCHS:-120}" --num_workers 3 --amp bf16 \
    --snapshot_patterns 200k,1M,5M,20M --run_dir "$RUN" --resume auto "$@"
