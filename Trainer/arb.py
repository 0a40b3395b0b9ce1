"""ARB-Loss step: the plain step, or input mixup when the loss asks for it (``mixup_alpha`` > 0).

Mixup: H. Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018, in the form the
ARB-Loss spec reconstructs (docs/methods/arb.md §1): λ ~ Beta(α, α) once per batch, partner =
a random permutation of the batch, x̃ = λ·x + (1 − λ)·x[perm]. The loss receives ``mix_index``
and ``mix_lam`` in the batch and combines the two targets itself. λ and the permutation come from
torch's global CPU generator, which the checkpoint saves, so a resumed run replays them.
"""

from __future__ import annotations

from typing import Any

import torch

from Trainer.base import Trainer
from Trainer.registry import TRAINERS


def mixup_batch(batch: dict[str, Any], alpha: float) -> dict[str, Any]:
    """Mixed copy of ``batch``: ``x`` (B, ...) mixed, plus ``mix_index`` (B,) and ``mix_lam`` ().

    Args:
        batch: the batch contract (``x`` any shape with the batch first, ``y_sg`` (B,)).
        alpha: Beta(α, α) parameter, > 0.
    """
    x = batch["x"]
    lam = torch.distributions.Beta(torch.tensor(float(alpha)), torch.tensor(float(alpha))).sample()
    perm = torch.randperm(x.shape[0]).to(x.device)
    lam_x = lam.to(device=x.device, dtype=x.dtype)
    return {**batch, "x": lam_x * x + (1.0 - lam_x) * x[perm], "mix_index": perm,
            "mix_lam": lam.to(x.device)}


@TRAINERS.register("arb")
class ARBTrainer(Trainer):
    """Trainer of ARB-Loss; identical to the default step unless ``loss_fn.mixup_alpha`` > 0."""

    def train_step(self, batch: dict[str, Any], epoch: int, step: int) -> dict[str, float]:
        alpha = float(getattr(self.loss_fn, "mixup_alpha", 0.0))
        if alpha > 0:
            batch = mixup_batch(batch, alpha)
        return super().train_step(batch, epoch, step)
