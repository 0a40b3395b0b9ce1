"""Rule-guided gate of the ICL mixture of experts, and the crystallographic prior it starts from.

Gate (ICL XRD version): ``g = softmax(G(u) + softmax(cs_logits) @ R_gate)`` with G = Linear(d → K)
and R_gate a (7, K) bias: each crystal system pushes the routing towards some experts. The XRD code
ships R_gate = 0 ("not used for now"); here :func:`gate_prior` derives a real prior from the
training class counts, so systems dominated by rare space groups lean on the tail (focal-loss)
experts and the others on the head (CE) experts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from utils.crystal import N_CS, N_SG, SG_TO_CS
from utils.errors import ConfigError, DataError

GATE_PRIOR_MODES = ("log_odds", "linear")


def tail_fraction(class_counts: Sequence[float] | np.ndarray | torch.Tensor,
                  tail_threshold: float = 20) -> tuple[np.ndarray, np.ndarray]:
    """Per crystal system: (number of training samples, how many of them are in tail classes).

    Args:
        class_counts: (230,) training samples per space group (0-based).
        tail_threshold: a class with fewer training samples than this is a tail (few-shot) class.

    Returns:
        ``(n_c, t_c)``, each (7,) float64.
    """
    counts = np.asarray(class_counts.cpu() if isinstance(class_counts, torch.Tensor) else class_counts,
                        dtype=np.float64)
    if counts.shape != (N_SG,) or not np.isfinite(counts).all() or (counts < 0).any():
        raise DataError(f"gate_prior(class_counts): expected 230 finite non-negative counts, got shape "
                        f"{counts.shape}. Fix: pass the training class counts (DataBundle.class_counts)")
    n_c = np.bincount(SG_TO_CS, weights=counts, minlength=N_CS)
    t_c = np.bincount(SG_TO_CS, weights=np.where(counts < tail_threshold, counts, 0.0), minlength=N_CS)
    return n_c, t_c


def check_expert_ids(num_experts: int, head: Sequence[int], tail: Sequence[int]) -> None:
    ids = list(head) + list(tail)
    if any(not 0 <= int(k) < num_experts for k in ids) or len(set(ids)) != len(ids):
        raise ConfigError(f"gate prior: head experts {list(head)} and tail experts {list(tail)} must be "
                          f"disjoint ids in 0..{num_experts - 1}. Fix: correct the expert id lists")


def gate_prior(class_counts: Sequence[float] | np.ndarray | torch.Tensor, num_experts: int = 8,
               head_experts: Sequence[int] = (0, 1, 2, 3), tail_experts: Sequence[int] = (4, 5, 6, 7),
               strength: float = 1.0, tail_threshold: float = 20, mode: str = "log_odds") -> torch.Tensor:
    """Crystallographic gate prior R_gate (7, K) from training class counts.

    For crystal system c let n_c be its training samples and t_c those in tail classes
    (count < ``tail_threshold``), f_c = t_c / n_c its tail fraction.

    * ``mode="log_odds"`` (default): z_c = logit(f_c) − logit(f̄), the log odds ratio of the
      system's tail fraction against the whole training set's f̄ (both smoothed by +0.5 / +1 so
      empty or tail-free systems stay finite); ``R[c, tail] = +strength·z_c/2`` and
      ``R[c, head] = −strength·z_c/2``. With a one-hot crystal system and G(u) = 0, the routing
      odds tail:head become (|T|/|H|)·exp(strength·z_c): at strength 1 a system that is e.g. 4× as
      enriched in rare groups (in odds) as the data set sends 4× the (odds of) mass to the tail
      experts; a system with the average tail fraction is routed uniformly. Centring matters: raw
      fractions are small for every system (rare classes are rare), so uncentred values would send
      everything to the head experts.
    * ``mode="linear"``: ``R[c, tail] = strength·f_c``, ``R[c, head] = strength·(1 − f_c)``;
      only the difference strength·(2f_c − 1) matters to the softmax.

    Systems without training samples get a zero row (no preference); experts in neither list get
    0 bias.

    Returns:
        (7, K) float32 tensor.
    """
    if mode not in GATE_PRIOR_MODES:
        raise ConfigError(f"gate_prior: unknown mode '{mode}'. Fix: use one of {GATE_PRIOR_MODES}")
    check_expert_ids(num_experts, head_experts, tail_experts)
    n_c, t_c = tail_fraction(class_counts, tail_threshold)
    present = n_c > 0
    if mode == "log_odds":
        f_c = (t_c + 0.5) / (n_c + 1.0)
        f_all = (t_c.sum() + 0.5) / (n_c.sum() + 1.0)
        z = np.log(f_c / (1 - f_c)) - np.log(f_all / (1 - f_all))
        tail_b, head_b = strength * z / 2, -strength * z / 2
    else:
        f_c = np.where(present, t_c / np.maximum(n_c, 1.0), 0.5)
        tail_b, head_b = strength * f_c, strength * (1 - f_c)
    r = np.zeros((N_CS, num_experts))
    r[:, list(tail_experts)] = tail_b[:, None]
    r[:, list(head_experts)] = head_b[:, None]
    r[~present] = 0.0
    return torch.as_tensor(r, dtype=torch.float32)


class RuleGate(nn.Module):
    """``g = softmax(G(u) + softmax(cs_logits) @ R)``.

    G is zero-initialised, so training starts from the prior's routing (uniform without one) and
    the prior's effect is visible in the first gate plots. R is a buffer (fixed) or, with
    ``learn_prior``, a parameter; it is named ``prior`` either way so checkpoints load across the
    two settings.

    Shapes: u (B, d), cs_logits (B, 7) → gate (B, K) float32, rows sum to 1.
    """

    def __init__(self, in_dim: int, num_experts: int, prior: torch.Tensor | None = None,
                 learn_prior: bool = False) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, num_experts)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)
        prior = torch.zeros(N_CS, num_experts) if prior is None else torch.as_tensor(prior).float()
        if prior.shape != (N_CS, num_experts):
            raise ConfigError(f"RuleGate: gate prior has shape {tuple(prior.shape)}, expected "
                              f"({N_CS}, {num_experts}). Fix: build it with gate_prior(..., "
                              f"num_experts={num_experts})")
        if learn_prior:
            self.prior = nn.Parameter(prior.clone())
        else:
            self.register_buffer("prior", prior.clone())

    def logits(self, u: torch.Tensor, cs_logits: torch.Tensor) -> torch.Tensor:
        """Gate logits (B, K) before the softmax."""
        return self.fc(u) + torch.softmax(cs_logits, dim=-1) @ self.prior

    def forward(self, u: torch.Tensor, cs_logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(u, cs_logits).float(), dim=-1)   # float32 under autocast too
