"""ARB-Loss: Attraction-Repulsion-Balanced loss, inspired by neural collapse.

Paper: X. Xie et al., "Neural Collapse Inspired Attraction-Repulsion-Balanced Loss for Imbalanced
Learning", Neurocomputing 2023. Spec: docs/methods/arb.md. Written from the formula, not from the
reference code.

For a linear classifier the CE gradient on the weight w_j has an attraction part (from class-j
samples) and repulsion parts (from the other samples); tail weights receive mostly repulsion. ARB
scales the repulsion that a sample of class y exerts on w_j by n_j / n_y::

    L_ARB(z, y; n) = −log [ exp(z_y) / Σ_j (n_j / n_y) · exp(z_j) ] = CE(z + log n, y)

(multiply numerator and denominator by n_y). It is computed in the second, log-sum-exp form.

* ``count_mode="global"``: n = training counts, clamped to ≥ 1 (a space group absent from training
  would otherwise get log 0 = −∞). This is mathematically Balanced Softmax / logit-adjusted CE
  with τ = 1 (Ren et al., NeurIPS 2020; Menon et al., ICLR 2021): do not report it as a separate
  baseline from those without saying so. The paper's "ugcc" configs.
* ``count_mode="batch"`` (the paper's plain "arbloss" configs): n = label histogram of the current
  mini-batch; classes absent from the batch get n_j = 0 and drop out of the normaliser. With 230
  space groups and batch 128 most classes are absent, so the loss depends strongly on the batch
  composition; global mode is this framework's default.
* ``tau`` ≠ 1 multiplies log n (a documented generalisation; τ = 1 is ARB, τ = 0 is CE).
* ``logit_clamp`` > 0 clamps the logits to [−c, c] first, as the reference code does with c = 30
  (zero gradient for saturated logits); 0 (default) keeps the exact formula.
* ``mixup_alpha`` > 0: the ``arb`` trainer mixes the inputs (λ ~ Beta(α, α), partner = a random
  permutation of the batch) and puts ``mix_index`` (B,) and ``mix_lam`` () in the batch; the loss is
  then λ·L_ARB(z, y; n) + (1 − λ)·L_ARB(z, y[mix_index]; n) with n from the un-mixed labels (batch
  mode) or the global counts. The reference repository's mixup helper is missing; this is the
  natural reconstruction described by the spec.

Inference is a plain argmax of z (no count correction at test time). The reference code's per-step
O(C²) per-class gradient-norm diagnostic is not implemented (it does not change training).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn as nn

from loss.registry import LOSSES
from utils.errors import ConfigError, fail

COUNT_MODES = ("global", "batch")
Tensors = dict[str, torch.Tensor]


def arb_log_counts(class_counts: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """τ·log n for (C,) counts, with −∞ where n = 0 (the class leaves the normaliser).

    Written with ``masked_fill`` so that τ = 0 gives 0 (not 0·(−∞) = NaN) for present classes.
    """
    n = class_counts.float()
    return (tau * n.clamp_min(1.0).log()).masked_fill(n <= 0, float("-inf"))


def arb_per_sample(logits: torch.Tensor, y: torch.Tensor, log_counts: torch.Tensor) -> torch.Tensor:
    """Per-sample L_ARB = logsumexp_j(z_j + log n_j) − (z_y + log n_y).

    Args:
        logits: (B, C) logits z.
        y: (B,) int64 targets; n_y must be > 0 (it is: y is in the batch / the clamped counts).
        log_counts: (C,) τ·log n (−∞ for absent classes), see :func:`arb_log_counts`.

    Returns:
        (B,) float32 losses.
    """
    adj = logits.float() + log_counts
    return torch.logsumexp(adj, dim=-1) - adj.gather(-1, y.unsqueeze(-1)).squeeze(-1)


@LOSSES.register("arb")
class ARBLoss(nn.Module):
    """Attraction-Repulsion-Balanced loss (batch mean), optionally with mixup.

    Args:
        class_counts: (C,) training counts (global mode; C = 230 on XRD, 100 on CIFAR-100-LT).
        count_mode: "global" (training counts, clamped ≥ 1) or "batch" (histogram of the batch).
        tau: multiplier of log n (1 = ARB).
        logit_clamp: clamp logits to [−c, c] before the loss (0 = off; reference code: 30).
        mixup_alpha: Beta(α, α) of input mixup done by the ``arb`` trainer (0 = off).

    Forward inputs: outputs with "logits" (B, C); batch with "y_sg" (B,) and, with mixup,
    "mix_index" (B,) int64 and "mix_lam" () float. Returns {"loss", "l_arb"} (l_arb detached).
    """

    summary = "ARB-Loss (Neurocomputing 2023): attraction-repulsion-balanced cross-entropy"
    default_model = "linear"
    trainer = "arb"  # the plain step unless mixup_alpha > 0

    def __init__(self, class_counts: Any, count_mode: str = "global", tau: float = 1.0,
                 logit_clamp: float = 0.0, mixup_alpha: float = 0.0) -> None:
        super().__init__()
        if count_mode not in COUNT_MODES:
            raise fail(ConfigError, "--arb_count_mode", f"unknown mode '{count_mode}'",
                       f"use one of: {', '.join(COUNT_MODES)}")
        if logit_clamp < 0 or mixup_alpha < 0:
            raise fail(ConfigError, "--arb_logit_clamp/--arb_mixup_alpha", "negative value",
                       "pass 0 (off) or a positive number (reference: clamp 30, mixup 1.0 or 0.2)")
        counts = torch.as_tensor(class_counts, dtype=torch.float32)
        if counts.dim() != 1 or counts.numel() < 2 or bool((counts < 0).any()) \
                or not bool(torch.isfinite(counts).all()):
            raise fail(ConfigError, "class_counts", f"expected (C,) non-negative counts, got shape "
                       f"{tuple(counts.shape)}", "pass the training histogram of the classes")
        self.register_buffer("class_counts", counts)
        self.count_mode, self.tau = count_mode, float(tau)
        self.logit_clamp, self.mixup_alpha = float(logit_clamp), float(mixup_alpha)

    def on_epoch_start(self, epoch: int) -> None:
        """Stateless across epochs: nothing to do."""

    def log_counts(self, y: torch.Tensor) -> torch.Tensor:
        """(C,) τ·log n of the active count mode for the un-mixed labels ``y`` (B,)."""
        if self.count_mode == "global":
            return self.tau * self.class_counts.clamp_min(1.0).log()
        hist = torch.bincount(y, minlength=self.class_counts.numel())
        return arb_log_counts(hist, self.tau)

    def forward(self, outputs: Tensors, batch: Tensors) -> Tensors:
        z = outputs["logits"].float()
        y = batch["y_sg"]
        if self.logit_clamp > 0:
            z = z.clamp(-self.logit_clamp, self.logit_clamp)
        logn = self.log_counts(y)
        loss = arb_per_sample(z, y, logn).mean()
        if "mix_index" in batch:
            lam = torch.as_tensor(batch["mix_lam"], dtype=torch.float32, device=z.device)
            loss_b = arb_per_sample(z, y[batch["mix_index"]], logn).mean()
            loss = lam * loss + (1.0 - lam) * loss_b
        return {"loss": loss, "l_arb": loss.detach()}

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("arb")
        g.add_argument("--arb_count_mode", default="global", choices=list(COUNT_MODES),
                       help="n in CE(z + log n): training counts (global, = Balanced Softmax) or the "
                            "label histogram of each mini-batch (batch, the paper's plain config)")
        g.add_argument("--arb_tau", type=float, default=1.0, help="multiplier of log n (1 = ARB)")
        g.add_argument("--arb_logit_clamp", type=float, default=0.0,
                       help="clamp logits to [-c, c] first (reference code: 30; 0 = off)")
        g.add_argument("--arb_mixup_alpha", type=float, default=0.0,
                       help="input mixup with lambda ~ Beta(a, a) (0 = off; paper: 1.0 CIFAR, 0.2 ImageNet)")


def arb_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Explicit ARBLoss keyword arguments (the root adds ``class_counts``)."""
    return {"count_mode": args.arb_count_mode, "tau": args.arb_tau, "logit_clamp": args.arb_logit_clamp,
            "mixup_alpha": args.arb_mixup_alpha}


ARBLoss.args_to_kwargs = staticmethod(arb_kwargs)
