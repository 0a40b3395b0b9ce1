"""GLMC: Global and Local Mixture Consistency cumulative learning.

Paper: F. Du, P. Yang, Q. Jia, F. Nan, X. Chen, Y. Yang, "Global and Local Mixture Consistency
Cumulative Learning for Long-tailed Visual Recognitions", CVPR 2023 (reference code
github.com/ynu-yangpeng/GLMC). Spec: docs/methods/glmc.md §1. Written from the formulas.

For a step with uniform labels y^a, re-weighted labels y^b and mixing ratio λ (outputs of the
globally (MixUp) and locally (CutMix) mixed inputs, subscripts G and L)::

    softCE(o, t) = −mean_i Σ_c t_ic log softmax(o_i)_c
    t   = λ e(y^a) + (1−λ) e(y^b),   t^w = λ w ⊙ e(y^a) + (1−λ) w ⊙ e(y^b)
    w_c = C · n_c^(−γ) / Σ_j n_j^(−γ)                       (mean 1)
    L_bal = softCE(o_G, t) + softCE(o_L, t)                 (conventional head fc)
    L_rb  = softCE(o^cb_G, t^w) + softCE(o^cb_L, t^w)       (re-balanced head fc_cb)
    L_MC  = −cos(p_G, sg(z_L)) − cos(p_L, sg(z_G))           (batch means; sg = stop-gradient)
    L = α_e · L_bal + (1 − α_e) · L_rb + λ_MC · L_MC,      α_e = 1 − (e/E)²

The mixing itself (two loaders, two views, one λ ~ Beta(α_mix, α_mix) per step) is done by the
``glmc`` trainer (``Trainer/glmc.py``), which reads ``mix_alpha`` and ``area_corrected_lambda``
from this object; the re-weighted loader's exponent ``--resample_q`` is read by the composition
root through :attr:`GLMCLoss.extra_loaders`.

Decisions where the spec is silent:
* Space groups without training samples (n_c = 0, common among the 230 XRD classes) would get an
  infinite weight; they never occur as labels, so they are left out of the normaliser (C becomes
  the number of present classes, the mean weight over present classes stays 1) and get w = 0.
* ``contrast_weight`` is a float (the reference code types it int, so 0.5 was impossible).
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from loss.registry import LOSSES
from utils.errors import ConfigError, fail

Tensors = dict[str, torch.Tensor]


def glmc_class_weights(class_counts: Any, gamma: float) -> torch.Tensor:
    """w_c = C₊ · n_c^(−γ) / Σ_{j: n_j>0} n_j^(−γ) for present classes, 0 for empty ones: (C,)."""
    n = np.asarray(class_counts, dtype=np.float64)
    present = n > 0
    if not present.any():
        raise fail(ConfigError, "class_counts", "every class count is zero", "pass the training counts")
    pw = np.zeros_like(n)
    pw[present] = n[present] ** (-float(gamma))
    return torch.as_tensor(present.sum() * pw / pw.sum(), dtype=torch.float32)


def mixed_soft_ce(logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float | torch.Tensor,
                  weights: torch.Tensor | None = None) -> torch.Tensor:
    """softCE(o, t) with t = λ w ⊙ e(y^a) + (1−λ) w ⊙ e(y^b) (w = 1 if None), batch mean.

    Args:
        logits: (B, C). y_a, y_b: (B,) long. lam: λ (a float or 0-d tensor).
        weights: (C,) class weights w or None.
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    ce_a = -logp.gather(1, y_a[:, None])[:, 0]
    ce_b = -logp.gather(1, y_b[:, None])[:, 0]
    if weights is not None:
        ce_a, ce_b = ce_a * weights[y_a], ce_b * weights[y_b]
    return (lam * ce_a + (1.0 - lam) * ce_b).mean()


def mixture_consistency(p_g: torch.Tensor, z_g: torch.Tensor, p_l: torch.Tensor,
                        z_l: torch.Tensor) -> torch.Tensor:
    """L_MC = −mean cos(p_G, sg(z_L)) − mean cos(p_L, sg(z_G)) (SimSiam-style, no ½): scalar.

    Args: p_g, p_l: (B, d) predictor outputs. z_g, z_l: (B, d) projector outputs (detached here).
    """
    cos = F.cosine_similarity
    return -cos(p_g.float(), z_l.detach().float(), dim=-1).mean() \
        - cos(p_l.float(), z_g.detach().float(), dim=-1).mean()


def cumulative_alpha(epoch: int, epochs: int) -> float:
    """α_e = 1 − (e/E)² (e 0-based): 1 at the first epoch, ≈ 2/E at the last."""
    return 1.0 - (float(epoch) / float(epochs)) ** 2


@LOSSES.register("glmc")
class GLMCLoss(nn.Module):
    """α_e·L_bal + (1−α_e)·L_rb + λ_MC·L_MC on the two mixed batches of a GLMC step.

    Args:
        class_counts: (C,) training counts n_c (weights w).
        epochs: E of the cumulative schedule.
        label_weight_gamma: γ of w_c ∝ n_c^(−γ) (paper: 1.2 on CIFAR, 1.0 on ImageNet-LT).
        contrast_weight: λ_MC.
        mix_alpha: α of λ ~ Beta(α, α) (read by the trainer; the reference code draws Beta(1, 1)).
        area_corrected_lambda: the trainer re-computes the local (CutMix) label weight from the
            clipped segment (1 − |segment|/L) instead of keeping λ as the paper's code does.

    Inputs (forward):
        outputs: ``{"global": out_G, "local": out_L}``, each a training-mode ``glmc`` model output
            with ``logits_fc`` o (B, C), ``logits`` o^cb (B, C), ``proj`` z (B, d), ``pred`` p (B, d).
        batch: ``{"y_sg": y^a (B,), "y_mix": y^b (B,), "lam_global": λ_G, "lam_local": λ_L}``
            (0-d float tensors; equal unless area-corrected).

    Returns: ``{"loss", "l_bal", "l_rb", "l_mc", "alpha"}`` (components detached).
    """

    summary = "GLMC (CVPR 2023): re-weighted second loader, MixUp/1-D CutMix, mixture consistency"
    default_model = "glmc"
    trainer = "glmc"
    n_views = 2                                   # two augmentations per sample (global / local mix)
    extra_loaders = {"train_rb": "resample_q"}    # the re-weighted loader and the flag of its q

    def __init__(self, class_counts: Any, epochs: int, label_weight_gamma: float = 1.2,
                 contrast_weight: float = 4.0, mix_alpha: float = 1.0,
                 area_corrected_lambda: bool = False) -> None:
        super().__init__()
        if epochs < 1:
            raise fail(ConfigError, "--epochs", f"{epochs} < 1", "pass at least one epoch")
        if mix_alpha <= 0:
            raise fail(ConfigError, "--mix_alpha", f"{mix_alpha} is not positive",
                       "pass the Beta parameter, e.g. 1.0 (the reference code's)")
        if contrast_weight < 0 or label_weight_gamma < 0:
            raise fail(ConfigError, "--contrast_weight/--label_weight_gamma",
                       f"negative value ({contrast_weight}, {label_weight_gamma})", "pass values >= 0")
        self.epochs, self.gamma, self.contrast_weight = int(epochs), float(label_weight_gamma), \
            float(contrast_weight)
        self.mix_alpha, self.area_corrected_lambda = float(mix_alpha), bool(area_corrected_lambda)
        self.register_buffer("class_weights", glmc_class_weights(class_counts, label_weight_gamma))
        self.register_buffer("alpha", torch.tensor(1.0))

    def on_epoch_start(self, epoch: int) -> None:
        """Set α_e for this epoch (constant within it)."""
        self.alpha.fill_(cumulative_alpha(epoch, self.epochs))

    def forward(self, outputs: dict[str, Tensors], batch: Tensors) -> Tensors:
        out_g, out_l = outputs["global"], outputs["local"]
        y_a, y_b = batch["y_sg"], batch["y_mix"]
        lam_g, lam_l = batch["lam_global"], batch["lam_local"]
        w = self.class_weights
        l_bal = mixed_soft_ce(out_g["logits_fc"], y_a, y_b, lam_g) \
            + mixed_soft_ce(out_l["logits_fc"], y_a, y_b, lam_l)
        l_rb = mixed_soft_ce(out_g["logits"], y_a, y_b, lam_g, w) \
            + mixed_soft_ce(out_l["logits"], y_a, y_b, lam_l, w)
        l_mc = mixture_consistency(out_g["pred"], out_g["proj"], out_l["pred"], out_l["proj"])
        a = self.alpha
        loss = a * l_bal + (1.0 - a) * l_rb + self.contrast_weight * l_mc
        return {"loss": loss, "l_bal": l_bal.detach(), "l_rb": l_rb.detach(), "l_mc": l_mc.detach(),
                "alpha": a.detach().clone()}

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        """GLMC's flags in an argument group "glmc" (defaults: the paper's CIFAR-100-LT IF100)."""
        g = parser.add_argument_group("glmc")
        g.add_argument("--resample_q", type=float, default=0.0,
                       help="re-weighted loader: per-sample weight n_y^(-q), class probability ∝ "
                            "n_c^(1-q) (paper: 0.0 for IF100, 0.2 for IF50/IF10 and ImageNet-LT)")
        g.add_argument("--label_weight_gamma", type=float, default=1.2,
                       help="γ of the fc_cb class weights w_c ∝ n_c^(-γ) (paper: 1.2 CIFAR, 1.0 ImageNet)")
        g.add_argument("--contrast_weight", type=float, default=4.0,
                       help="λ_MC, weight of the global-local mixture consistency loss")
        g.add_argument("--mix_alpha", type=float, default=1.0,
                       help="λ ~ Beta(mix_alpha, mix_alpha), one λ per step for both mixes")
        g.add_argument("--area_corrected_lambda", action="store_true",
                       help="CutMix label weight from the clipped segment (the paper keeps λ)")


def glmc_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Explicit GLMCLoss keyword arguments (the root adds ``class_counts`` and ``epochs``)."""
    return {"label_weight_gamma": args.label_weight_gamma, "contrast_weight": args.contrast_weight,
            "mix_alpha": args.mix_alpha, "area_corrected_lambda": args.area_corrected_lambda}


GLMCLoss.args_to_kwargs = staticmethod(glmc_kwargs)
