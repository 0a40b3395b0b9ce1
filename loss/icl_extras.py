"""Optional pieces of ICL's CIFAR version (github.com/PolarisLight/ICL), all off by default for XRD.

Paper: "Enhancing Mixture of Experts with Independent and Collaborative Learning for Long-Tail
Visual Recognition", IJCAI 2025. Written from the formulas in docs/methods/icl.md, not from that code.

* :func:`parallel_circuit_loss` — competition as resistors in parallel: the harmonic mean of the
  experts' losses, so the better expert receives the larger gradient.
* :func:`mutual_distillation_loss` — every expert distils every other one (Zhang et al., "Deep
  Mutual Learning", CVPR 2018).
* :func:`diversity_loss` — pushes the experts' outputs apart in the first epochs. The CIFAR code
  ADDS the mean pairwise distance to the minimised loss, which pulls representations together
  (wrong sign); here the distance is subtracted, as intended.
* :class:`HardNegativeMiner` — EMA class prototypes + a confusion matrix (buffers, so they are in
  the checkpoint); each anchor is contrasted against the prototypes of the classes its own class is
  most confused with. It is one weighted term; unlike the CIFAR code it never replaces the others.
* Balanced-softmax classifier re-training lives in :class:`loss.icl.ICLLoss` (it changes L_dol).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from loss.components import ce_per_sample, kl_per_sample


def parallel_circuit_loss(expert_logits: torch.Tensor, y: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``L_par = K / Σ_k 1/(CE_k + ε)`` with CE_k the batch-mean CE of expert k.

    The experts' losses are the "resistances" of a parallel circuit: dL/dCE_k ∝ 1/(CE_k + ε)², so
    the expert with the lowest loss gets the largest gradient. With one expert L_par = CE + ε.

    Args:
        expert_logits: (B, K, C) logits.
        y: (B,) int64 targets.
        eps: keeps 1/CE finite for a perfect expert.
    """
    b, k, _ = expert_logits.shape
    ce_k = ce_per_sample(expert_logits, y[:, None].expand(b, k)).mean(0)  # (K,)
    return k / (1.0 / (ce_k + eps)).sum()


def mutual_distillation_loss(expert_logits: torch.Tensor) -> torch.Tensor:
    """``Σ_{i≠j} KL(p_j ‖ p_i)`` over ordered expert pairs, batch mean.

    The target distribution p_j is detached (Deep Mutual Learning's convention: each expert
    learns from its peers without dragging them). The sum has K(K−1) terms; scale the weight
    accordingly. Zero for K = 1.

    Args:
        expert_logits: (B, K, C) logits.
    """
    target = expert_logits.detach()[:, None, :, :]  # p_j at [b, 0, j]
    student = expert_logits[:, :, None, :]  # p_i at [b, i, 0]
    kl = kl_per_sample(target, student)  # (B, K_i, K_j); the diagonal i = j is exactly 0
    return kl.sum((1, 2)).mean()


def diversity_loss(expert_logits: torch.Tensor) -> torch.Tensor:
    """Minus the mean pairwise squared distance between the experts' L2-normalised logit vectors.

    ``L_div = −(1/(K(K−1))) Σ_{i≠j} mean_b ‖ẑ_bi − ẑ_bj‖²`` with ẑ = z/‖z‖ (= 2 − 2 cos). Minimising
    it pushes the experts apart (the intended sign; the CIFAR code adds +distance, which pulls them
    together). Bounded in [−4, 0]; the squared distance keeps the gradient finite when two experts
    coincide. The expert logits are used because in this framework's lightweight MoE the experts
    share their features and differ only in their classifiers. Zero for K = 1.

    Args:
        expert_logits: (B, K, C) logits.
    """
    k = expert_logits.shape[1]
    if k < 2:
        return expert_logits.float().sum() * 0.0
    z = F.normalize(expert_logits.float(), dim=-1)
    gram = z @ z.transpose(1, 2)  # (B, K, K)
    off = ~torch.eye(k, dtype=torch.bool, device=z.device)
    sq_dist = (2.0 - 2.0 * gram)[:, off]  # (B, K(K−1))
    return -sq_dist.mean()


class HardNegativeMiner(nn.Module):
    """Hard-negative contrast against EMA class prototypes of the most-confused classes.

    State (buffers, saved in ``state_dict``): ``prototypes`` (C, D) unit vectors (created on the
    first update, D taken from the features; loading a state dict resizes it), ``seen`` (C,) bool,
    ``confusion`` (C, C) cumulative counts of (true, predicted) mistakes.

    Loss for an anchor i of class y (whose prototype exists): with N(y) the ``topk`` seen classes
    c ≠ y of largest ``confusion[y, c]`` (ties — e.g. no mistakes yet — broken by prototype cosine
    similarity to μ_y), ``−log e^{f_i·μ_y/τ} / (e^{f_i·μ_y/τ} + Σ_{c∈N(y)} e^{f_i·μ_c/τ})``; mean over
    such anchors (0 when there are none or fewer than two classes have prototypes).

    Updates (no grad, only when the module is in training mode and grad is enabled, so evaluation
    under ``torch.no_grad`` never changes the state): μ_c ← normalise(m·μ_c + (1−m)·mean_c(f)) for
    classes in the batch (a first-seen class starts at its batch mean), and the confusion counts
    from the predictions. The loss uses the prototypes from BEFORE this batch's update.
    """

    def __init__(self, num_classes: int, momentum: float = 0.9, topk: int = 7,
                 temperature: float = 0.07) -> None:
        super().__init__()
        self.num_classes, self.momentum = num_classes, momentum
        self.topk, self.temperature = topk, temperature
        self.register_buffer("prototypes", torch.zeros(0))
        self.register_buffer("seen", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer("confusion", torch.zeros(num_classes, num_classes))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The prototypes' width is only known after the first batch: adopt the saved shape.
        saved = state_dict.get(prefix + "prototypes")
        if saved is not None and saved.shape != self.prototypes.shape:
            self.prototypes = torch.zeros_like(saved, device=self.prototypes.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def forward(self, features: torch.Tensor, y: torch.Tensor, preds: torch.Tensor) -> torch.Tensor:
        """Loss on this batch, then (in training) update prototypes and confusion.

        Args:
            features: (B, D) features (normalised here).
            y: (B,) int64 true labels.
            preds: (B,) int64 predicted labels (for the confusion matrix).
        """
        f = F.normalize(features.float(), dim=-1)
        loss = self.loss(f, y)
        if self.training and torch.is_grad_enabled():
            self.update(f.detach(), y, preds.detach())
        return loss

    def loss(self, f: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        zero = f.sum() * 0.0
        n_seen = int(self.seen.sum())
        k = min(self.topk, n_seen - 1)
        if self.prototypes.numel() == 0 or k < 1:
            return zero
        protos = self.prototypes.to(f.dtype)
        valid = self.seen[y]  # anchors whose own prototype exists
        if not bool(valid.any()):
            return zero
        yv, fv = y[valid], f[valid]
        # Lexicographic ranking: integer confusion counts first, similarity in [0, 0.5] breaks ties.
        score = self.confusion[yv] + 0.25 * (1.0 + protos[yv] @ protos.t())
        bad = ~self.seen[None, :].expand_as(score) | F.one_hot(yv, self.num_classes).bool()
        neg = score.masked_fill(bad, float("-inf")).topk(k, dim=1).indices  # (V, k)
        cand = torch.cat([yv[:, None], neg], dim=1)  # positive first
        logits = torch.einsum("vd,vkd->vk", fv, protos[cand]) / self.temperature
        return F.cross_entropy(logits, torch.zeros_like(yv))

    @torch.no_grad()
    def update(self, f: torch.Tensor, y: torch.Tensor, preds: torch.Tensor) -> None:
        c, d = self.num_classes, f.shape[1]
        if self.prototypes.numel() == 0:
            self.prototypes = torch.zeros(c, d, device=f.device)
        sums = torch.zeros(c, d, device=f.device).index_add_(0, y, f)
        counts = torch.bincount(y, minlength=c)
        present = counts > 0
        mean = sums[present] / counts[present, None]
        old = self.prototypes[present]
        m = torch.where(self.seen[present, None], torch.full_like(old[:, :1], self.momentum),
                        torch.zeros_like(old[:, :1]))
        self.prototypes[present] = F.normalize(m * old + (1.0 - m) * mean, dim=-1)
        self.seen |= present
        wrong = preds != y
        flat = y[wrong] * c + preds[wrong]
        self.confusion += torch.bincount(flat, minlength=c * c).view(c, c).to(self.confusion.dtype)


def add_extras_args(group: argparse._ArgumentGroup) -> None:
    """The CIFAR-version options' flags (all off by default)."""
    group.add_argument("--lambda_par", type=float, default=0.0,
                       help="weight of the 'parallel circuit' competition loss K/Σ 1/(CE_k+ε) (0 = off)")
    group.add_argument("--lambda_mutual", type=float, default=0.0,
                       help="weight of mutual distillation Σ_{i≠j} KL(p_j‖p_i) between experts (0 = off)")
    group.add_argument("--lambda_div", type=float, default=0.0,
                       help="weight of the expert diversity term (pushes experts apart; 0 = off)")
    group.add_argument("--div_epochs", type=int, default=0,
                       help="apply the diversity term during the first N epochs only")
    group.add_argument("--lambda_hnm", type=float, default=0.0,
                       help="weight of hard-negative mining against EMA class prototypes (0 = off)")
    group.add_argument("--hnm_momentum", type=float, default=0.9, help="EMA momentum of the prototypes")
    group.add_argument("--hnm_topk", type=int, default=7, help="number of most-confused classes used")
    group.add_argument("--hnm_temperature", type=float, default=0.07, help="hard-negative temperature")
    group.add_argument("--retrain_epochs", type=int, default=0,
                       help="balanced-softmax classifier re-training during the last N epochs (0 = off)")


EXTRAS_KEYS = ("lambda_par", "lambda_mutual", "lambda_div", "div_epochs", "lambda_hnm", "hnm_momentum",
               "hnm_topk", "hnm_temperature", "retrain_epochs")


def extras_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Explicit keyword arguments for the extras, read from the flags :func:`add_extras_args` declares."""
    return {key: getattr(args, key) for key in EXTRAS_KEYS}
