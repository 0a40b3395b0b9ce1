#!/usr/bin/env bash
# Cross-entropy baseline on CIFAR-100-LT with the LDAM-DRW / MiSLAS / ARB-Loss training recipe, so
# that CE, ARB and the other plug-ins are compared on one backbone and schedule.
# Reference: Cao et al. (NeurIPS 2019, LDAM-DRW) Table 2, ERM with ResNet-32: top-1 error 61.68 %
# (IF 100) and 44.30 % (IF 10), i.e. about 38.3 % / 55.7 % accuracy.
# Usage: bash scripts/cifar100_lt/ce.sh CIFAR_DIR [IF=100] [extra train.py flags...]
#   CIFAR_DIR holds cifar-100-python/ (the official python pickle folder; nothing is downloaded).
#
# Recipe: ResNet-32 (16/32/64, 0.46 M) + Linear(64 -> 100); SGD lr 0.1, momentum 0.9, weight decay
# 2e-4, batch 128, 200 epochs, 5 warm-up epochs, no gradient clipping; "cao" subset (seed 0).
# Differences from the reference code that this framework imposes (see the run's args.yaml):
# * LR: linear warm-up then cosine to 1e-6; the reference multiplies the lr by 0.01 at epoch 160
#   and by 0.0001 at 180 (the framework's schedule has no step decay).
# * Model selection: best epoch on test (there is no validation split, as in the papers); report
#   last.pt too (python test.py --ckpt RUN/last.pt).
set -euo pipefail
DATA=${1:?usage: $0 CIFAR_DIR [IF=100] [extra train.py flags...]}; shift
IF=100
if [[ "${1:-}" =~ ^[0-9]+$ ]]; then IF=$1; shift; fi
cd "$(dirname "$0")/../.."
python train.py --dataset cifar100_lt --data_format cifar100_lt --data_dir "$DATA" \
    --imbalance_factor "$IF" --lt_sampling cao \
    --frontend_type resnet32 --width_mult 1 --method ce \
    --lr 0.1 --momentum 0.9 --weight_decay 2e-4 --batch_size 128 --epochs 200 --warmup_epochs 5 \
    --max_grad_norm 0 --disable_grad_warn --seed 0 --device 0 --save_log True "$@"
