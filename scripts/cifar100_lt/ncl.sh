#!/usr/bin/env bash
# NCL (Li et al., CVPR 2022) on CIFAR-100-LT, imbalance factor 100: the published recipe
# (docs/methods/ncl.md §3; paper: 53.3 % single expert, 54.2 % ensemble top-1).
# Usage: bash scripts/cifar100_lt/ncl.sh CIFAR_DIR [extra train.py flags...]
#   CIFAR_DIR holds cifar-100-python/ (the standard pickle folder; nothing is downloaded).
#
# Recipe: 3 experts, each a full ResNet-32 with its own linear classifier; N_hcm = 30;
# α = α_hcm = 0.6; r_ce = r_hcm = 1; no MoCo term (CON_RATIO 0); SGD lr 0.1, momentum 0.9,
# weight decay 2e-4, batch 64, 400 epochs, uniform sampler, seed 42; no gradient clipping.
# Differences from the reference code that this framework imposes (see the run's args.yaml):
# * LR: the reference warms up linearly from lr/3 to lr over 5 epochs and then multiplies by 0.1
#   at epochs 320 and 360; the framework's schedule is a linear warm-up (5 epochs) then cosine.
# * Augmentation: the CIFAR reader's crop + flip; the reference adds AutoAugment and Cutout(16).
# * Data: the exponential profile sampled without replacement from cifar-100-python, not the
#   fixed Cui et al. files NCL trained on (docs/methods/conventions.md §1.1).
# * Model selection: the framework keeps the best epoch on the validation split if there is one,
#   else on the test split (as the paper does); report last.pt as well (test.py --ckpt .../last.pt).
set -euo pipefail
DATA=${1:?usage: $0 CIFAR_DIR [extra train.py flags...]}; shift
cd "$(dirname "$0")/../.."
python train.py --dataset cifar100_lt --data_dir "$DATA" --imbalance_factor 100 \
    --frontend_type resnet32 --method ncl \
    --ncl_num_experts 3 --ncl_hcm_n 30 --ncl_hcm_mode multiply \
    --ncl_alpha 0.6 --ncl_alpha_hcm 0.6 --ncl_ce_ratio 1.0 --ncl_hcm_ratio 1.0 --ncl_con_ratio 0 \
    --lr 0.1 --momentum 0.9 --weight_decay 2e-4 --batch_size 64 --epochs 400 --warmup_epochs 5 \
    --max_grad_norm 0 --disable_grad_warn --seed 42 --device 0 --save_log True "$@"
