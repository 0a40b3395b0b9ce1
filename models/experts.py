"""The K experts of the ICL mixture, computed as batched ops (no Python loop over experts).

Both modes read the frontend's feature map (B, C, T) and return expert logits (B, K, num_classes),
each ``o_k = s·cos(z_k, W_k)`` (cosine classifiers; ICL, Hu et al., IJCAI 2025).

* :class:`LightweightExperts` (the XRD code's scheme2 + contrast mode): one shared residual
  stage ("layer3"), global pooling, the model's shared projection P → v (B, d); experts differ
  only in their classifier, one (K, d, C) weight: ``o = s · einsum(v̂, Ŵ)``.
* :class:`OriginalExperts`: every expert owns a residual stage, a Linear(C → d_e) and a cosine
  classifier d_e → C; the K residual stages are one :class:`GroupedResBlock1d`, the K linears
  one (K, C, d_e) einsum.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from models.layers import GroupedResBlock1d, ResBlock1d


def _cosine_weight(num_experts: int, dim: int, num_classes: int) -> nn.Parameter:
    # Scale is irrelevant for a cosine classifier; random directions, as K separate classifiers.
    return nn.Parameter(torch.randn(num_experts, dim, num_classes) / math.sqrt(dim))


def batched_cosine(z: torch.Tensor, weight: torch.Tensor, scale: float) -> torch.Tensor:
    """``s·cos(z_k, W_k[:, c])`` for every expert k.

    Args:
        z: (B, d) features shared by all experts, or (B, K, d) one per expert.
        weight: (K, d, C).
        scale: s.

    Returns:
        (B, K, C).
    """
    w = F.normalize(weight, dim=1)
    z = F.normalize(z, dim=-1)
    if z.dim() == 2:
        return scale * torch.einsum("bd,kdc->bkc", z, w)
    return scale * torch.einsum("bkd,kdc->bkc", z, w)


class LightweightExperts(nn.Module):
    """Shared layer3 + shared projection + K cosine classifiers.

    Args:
        channels: C of the frontend feature map.
        num_experts: K.
        proj_dim: d, the output dimension of the shared projection P.
        num_classes: number of space groups.
        scale: cosine scale s.
        kernel_size: conv kernel of layer3.

    Shapes: fmap (B, C, T), proj: a module (B, C) → (B, d) → (B, K, num_classes).
    """

    def __init__(self, channels: int, num_experts: int, proj_dim: int, num_classes: int,
                 scale: float, kernel_size: int = 3) -> None:
        super().__init__()
        self.scale = float(scale)
        self.layer3 = ResBlock1d(channels, channels, kernel_size)
        self.weight = _cosine_weight(num_experts, proj_dim, num_classes)

    def features(self, fmap: torch.Tensor, proj: nn.Module) -> torch.Tensor:
        """v = P(mean_T(layer3(fmap))): (B, d)."""
        return proj(self.layer3(fmap).mean(dim=-1))

    def forward(self, fmap: torch.Tensor, proj: nn.Module) -> torch.Tensor:
        return batched_cosine(self.features(fmap, proj), self.weight, self.scale)


class OriginalExperts(nn.Module):
    """K experts, each with its own residual stage, Linear(C → d_e) and cosine classifier.

    Args:
        channels: C of the frontend feature map.
        num_experts: K.
        expert_dim: d_e (CODE: 32).
        num_classes: number of space groups.
        scale: cosine scale s.
        kernel_size: conv kernel of the K residual stages.

    Shapes: fmap (B, C, T) → (B, K, num_classes). Expert k's parameters are slice k of
    ``fc_weight`` (K, C, d_e), ``fc_bias`` (K, d_e), ``weight`` (K, d_e, num_classes) and output
    channels [k·C, (k+1)·C) of ``layer3``.
    """

    def __init__(self, channels: int, num_experts: int, expert_dim: int, num_classes: int,
                 scale: float, kernel_size: int = 3) -> None:
        super().__init__()
        self.scale = float(scale)
        self.layer3 = GroupedResBlock1d(channels, num_experts, kernel_size)
        bound = 1.0 / math.sqrt(channels)  # nn.Linear's default init, per expert
        self.fc_weight = nn.Parameter(torch.empty(num_experts, channels, expert_dim).uniform_(-bound, bound))
        self.fc_bias = nn.Parameter(torch.empty(num_experts, expert_dim).uniform_(-bound, bound))
        self.weight = _cosine_weight(num_experts, expert_dim, num_classes)

    def features(self, fmap: torch.Tensor, proj: nn.Module | None = None) -> torch.Tensor:
        """Per-expert embeddings (B, K, d_e)."""
        z = self.layer3(fmap).mean(dim=-1)                       # (B, K, C)
        return torch.einsum("bkc,kcd->bkd", z, self.fc_weight) + self.fc_bias

    def forward(self, fmap: torch.Tensor, proj: nn.Module | None = None) -> torch.Tensor:
        return batched_cosine(self.features(fmap), self.weight, self.scale)


EXPERT_MODES = {"lightweight": LightweightExperts, "original": OriginalExperts}
