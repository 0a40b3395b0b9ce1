"""Plain cross-entropy on the model's logits: the baseline objective.

Optional label smoothing (Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016).
"""

from __future__ import annotations

import argparse
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from loss.registry import LOSSES
from utils.errors import ConfigError, fail

Tensors = dict[str, torch.Tensor]


@LOSSES.register("ce")
class CELoss(nn.Module):
    """CE(outputs["logits"], batch["y_sg"]), batch mean.

    Args:
        class_counts: (C,) training counts; accepted for the common loss contract, unused.
        label_smoothing: ε in [0, 1): the target becomes (1 − ε)·onehot + ε/C.

    Returns (forward): {"loss": scalar with grad, "l_ce": the same value detached}.
    """

    summary = "plain cross-entropy on the same frontend (the reference baseline)"
    default_model = "linear"
    trainer = "default"

    def __init__(self, class_counts: Any = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise fail(ConfigError, "--label_smoothing", f"{label_smoothing} is outside [0, 1)",
                       "pass a value such as 0.0 or 0.1")
        self.label_smoothing = label_smoothing

    def on_epoch_start(self, epoch: int) -> None:
        """Stateless: nothing to do."""

    def forward(self, outputs: Tensors, batch: Tensors) -> Tensors:
        loss = F.cross_entropy(outputs["logits"].float(), batch["y_sg"],
                               label_smoothing=self.label_smoothing)
        return {"loss": loss, "l_ce": loss.detach()}

    @classmethod
    def add_args(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("ce")
        g.add_argument("--label_smoothing", type=float, default=0.0, help="CE label smoothing ε (0 = off)")


def ce_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Explicit CELoss keyword arguments (the root adds ``class_counts``)."""
    return {"label_smoothing": args.label_smoothing}


CELoss.args_to_kwargs = staticmethod(ce_kwargs)
