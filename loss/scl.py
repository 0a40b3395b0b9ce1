"""Physics-constrained supervised contrastive losses on normalised features (ICL-XRD's L_scl).

Both variants use the space-group similarity matrix R (230×230, values in [0, 1], R[c, c] = 1)
to decide how much two samples of different space groups count as "the same".

* ``scl_seed`` — the XRD reference code's variant (docs/methods/icl.md, "seed"): positives are same-group or
  R > threshold pairs; every other sample is weighted by (1 − R) in the denominator, so positives
  (R ≈ 1) are (almost) excluded from it. Because positives leave the denominator, a term
  S_ij − log D_i is not a log-probability and the loss is unbounded below ("L_scl can be
  negative").
* ``scl_soft`` — a bounded alternative: SupCon (Khosla et al., "Supervised Contrastive
  Learning", NeurIPS 2020, the L_out form) with soft positive weights w_ij = R[y_i, y_j] and the
  usual denominator over all k ≠ i; every term is a log-probability, so the loss is ≥ 0.

Both are vectorised over the batch (B×B matrices, no Python loops) and computed in float32.
Conventions chosen here (docs/methods/icl.md is silent on them):
* j = i is excluded from the positives, from the seed denominator (its weight 1 − R[y, y] is 0
  anyway for a rule matrix with unit diagonal; the exclusion makes this hold for any R) and from
  the soft denominator (as in SupCon).
* The row maximum subtracted from S includes the diagonal and is detached (SupCon's stabiliser).
  It cancels exactly in S_ij − log D_i except for the 1e−8 inside the seed variant's log.
* The mean is over ALL B anchors; an anchor without positives (seed) or with Σ_j w_ij = 0 (soft)
  contributes 0 (docs/methods/icl.md: "anchors without positives add 0"). SupCon's reference implementation
  averages over all anchors too.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_EPS = 1e-8  # CODE's constant inside log(D_i + eps)
_NEG = -1e9  # finite "minus infinity" so 0·(−∞) never produces NaN


def _similarity(features: torch.Tensor, temperature: float) -> torch.Tensor:
    """(B, B) S_ij = f_i·f_j/τ with the (detached) row maximum subtracted; f = normalise(features)."""
    f = F.normalize(features.float(), dim=-1)
    s = f @ f.t() / temperature
    return s - s.max(dim=1, keepdim=True).values.detach()


def _pair_rules(rule_matrix: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(B, B) R[y_i, y_j] in float32."""
    r = rule_matrix.to(device=y.device, dtype=torch.float32)
    return r[y][:, y]


def scl_seed(features: torch.Tensor, y: torch.Tensor, rule_matrix: torch.Tensor,
             temperature: float = 0.07, threshold: float = 0.8) -> torch.Tensor:
    """Seed (CODE) variant of the physics-constrained contrastive loss.

    ``L = mean_i −(1/|P(i)|) Σ_{j∈P(i)} (S_ij − log(D_i + 1e−8))`` with
    ``P(i) = {j ≠ i : y_j = y_i or R[y_i, y_j] > threshold}`` and
    ``D_i = Σ_{j≠i} (1 − R[y_i, y_j]) e^{S_ij}``. With R = I this is SupCon whose denominator holds
    only the negatives.

    Args:
        features: (B, D) features (normalised here).
        y: (B,) int64 space-group labels in [0, C).
        rule_matrix: (C, C) similarity in [0, 1].
        temperature: τ.
        threshold: R above which a different group counts as a positive.

    Returns:
        Scalar loss (may be negative).
    """
    b = y.shape[0]
    s = _similarity(features, temperature)
    r = _pair_rules(rule_matrix, y)
    not_self = ~torch.eye(b, dtype=torch.bool, device=y.device)
    pos = ((y[:, None] == y[None, :]) | (r > threshold)) & not_self
    denom = ((1.0 - r) * s.exp() * not_self).sum(1)  # (B,)
    log_ratio = s - torch.log(denom + _EPS)[:, None]
    n_pos = pos.sum(1)
    per_anchor = -(log_ratio * pos).sum(1) / n_pos.clamp_min(1)
    return per_anchor.mean()


def scl_soft(features: torch.Tensor, y: torch.Tensor, rule_matrix: torch.Tensor,
             temperature: float = 0.07) -> torch.Tensor:
    """Soft-positive SupCon: ``L = mean_i −Σ_{j≠i} w_ij log p_ij / Σ_{j≠i} w_ij``.

    ``w_ij = R[y_i, y_j]`` and ``p_ij = e^{S_ij} / Σ_{k≠i} e^{S_ik}``. With R = I it equals standard
    SupCon (positives = same label). Bounded below by 0.

    Args:
        features: (B, D) features (normalised here).
        y: (B,) int64 labels in [0, C).
        rule_matrix: (C, C) similarity in [0, 1].
        temperature: τ.

    Returns:
        Scalar loss (≥ 0).
    """
    b = y.shape[0]
    s = _similarity(features, temperature)
    self_mask = torch.eye(b, dtype=torch.bool, device=y.device)
    w = _pair_rules(rule_matrix, y).masked_fill(self_mask, 0.0)
    log_prob = s - torch.logsumexp(s.masked_fill(self_mask, _NEG), dim=1, keepdim=True)
    w_sum = w.sum(1)
    per_anchor = -(w * log_prob).sum(1) / w_sum.clamp_min(_EPS)
    return torch.where(w_sum > 0, per_anchor, torch.zeros_like(per_anchor)).mean()


SCL_VARIANTS = ("seed", "soft")
