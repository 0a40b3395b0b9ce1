"""GH training step: both views through the model in one forward, then the GH loss.

Y. Zhou et al., "Combating Representation Learning Disparity with Geometric Harmonization",
NeurIPS 2023; spec docs/methods/gh.md §2. The training loader yields ``batch["views"] = [x¹, x²]``
(two independent augmentations of every sample, ``datasets.views``); the step stacks them into one
(2B, ...) batch — BatchNorm then sees both views, as in SimCLR implementations that concatenate —
and the loss splits the outputs back. The memory bank update and the epoch-wise prior refresh live
in the loss (its buffers are in every checkpoint).
"""

from __future__ import annotations

from typing import Any

import torch

from Trainer.base import Trainer
from Trainer.registry import TRAINERS
from utils.errors import ConfigError


@TRAINERS.register("gh")
class GHTrainer(Trainer):
    """Two-view step for GH: outputs of ``model(cat([x¹, x²]))`` (2B rows) go to the loss."""

    def train_step(self, batch: dict[str, Any], epoch: int, step: int) -> dict[str, float]:
        views = batch.get("views")
        if not isinstance(views, (list, tuple)) or len(views) < 2:
            raise ConfigError("gh trainer: the batch has no two views (batch['views']). Fix: train with "
                              "--method gh, whose loss declares n_views = 2 so the loader builds them")
        x = torch.cat([views[0], views[1]], dim=0)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            outputs = self.model(x)
            losses = self.loss_fn(outputs, batch)
        # training accuracy of view 0 (the first B rows of the stacked outputs)
        return self.with_train_accuracy(self.backward_step(losses, epoch, step), outputs, batch)
