"""Per-sample building blocks shared by the objectives: cross-entropy, focal loss, KL divergence,
masking by the true crystal system, balanced-softmax logits.

Everything works on whatever device the inputs live on and is computed in float32 (logits are cast
with ``.float()``), so AMP's float16 logits never overflow in ``exp`` or the −1e9 mask.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from utils.crystal import cs_sg_mask, sg_to_cs

# CODE's value for "outside the true crystal system": finite (not −inf) so that any later soft
# target or label smoothing stays NaN-free; exp(−1e9 − max) underflows to exactly 0 in float32.
MASK_VALUE = -1e9


def ce_per_sample(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE(z, y) = −log softmax(z)_y for every row.

    Args:
        logits: (..., C) logits.
        y: (...) int64 targets (same leading shape).

    Returns:
        (...) float32 losses.
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    return -logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)


def focal_from_ce(ce: torch.Tensor, gamma: float) -> torch.Tensor:
    """Focal loss ``(1 − p_t)^γ · CE`` given the per-sample CE (p_t = e^{−CE}).

    Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017. The modulating factor is NOT
    detached (as in the paper). γ = 0 returns ``ce`` itself: ``x**0`` would give a NaN gradient at
    p_t = 1 (0·0^{−1}).
    """
    if gamma == 0:
        return ce
    p_t = torch.exp(-ce)
    return (1.0 - p_t).clamp_min(0.0).pow(gamma) * ce


def focal_loss(logits: torch.Tensor, y: torch.Tensor, gamma: float = 2.0,
               reduction: str = "mean") -> torch.Tensor:
    """Focal loss of (B, C) logits against (B,) targets; ``reduction`` in {"mean", "none"}."""
    loss = focal_from_ce(ce_per_sample(logits, y), gamma)
    return loss.mean() if reduction == "mean" else loss


def kl_per_sample(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """KL(softmax(p) ‖ softmax(q)) = Σ_c p_c (log p_c − log q_c) per row, from logits.

    Args:
        p_logits: (..., C) logits of the reference distribution p.
        q_logits: (..., C) logits of q (broadcastable against ``p_logits``).

    Returns:
        (...) float32 divergences (≥ 0).
    """
    logp = F.log_softmax(p_logits.float(), dim=-1)
    logq = F.log_softmax(q_logits.float(), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1)


def mask_by_true_cs(logits: torch.Tensor, y_sg: torch.Tensor) -> torch.Tensor:
    """Set every space-group logit outside the crystal system of ``y_sg`` to :data:`MASK_VALUE`.

    The crystal system is derived from ``y_sg`` itself (not from the batch's ``y_cs``), so the
    target is always inside the kept set whatever the batch says.

    Args:
        logits: (B, 230) space-group logits.
        y_sg: (B,) int64 targets in [0, 230).

    Returns:
        (B, 230) float32 logits; entries outside the true system no longer depend on the input.
    """
    keep = cs_sg_mask(logits.device)[sg_to_cs(y_sg)]  # (B, 230) bool
    return logits.float().masked_fill(~keep, MASK_VALUE)


def balanced_logits(logits: torch.Tensor, class_counts: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
    """Balanced-softmax logits ``z + log n`` (Ren et al., "Balanced Meta-Softmax", NeurIPS 2020);
    with ``tau`` the logit-adjusted ``z + τ·log n`` of Menon et al. (ICLR 2021) — log n and the log
    prior log π differ by a constant, which no softmax sees.

    Counts are clamped to ≥ 1 so a class absent from training gets log 1 = 0 instead of −inf
    (it is then strongly disfavoured by training, but an evaluation target there stays finite).

    Args:
        logits: (..., C) logits.
        class_counts: (C,) training counts.
        tau: the weight of log n.
    """
    return logits.float() + tau * class_counts.float().clamp_min(1.0).log()
