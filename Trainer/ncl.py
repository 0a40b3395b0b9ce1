"""NCL's training step: the default step, plus the second view for the optional MoCo branch.

NCL (Li et al., CVPR 2022; docs/methods/ncl.md §2): every expert sees the same augmented batch;
the model returns all K experts' logits in one outputs dict, so without the self-supervised variant
this is exactly :meth:`Trainer.train_step`. With the MoCo variant (``--ncl_con_ratio > 0``) the
batch carries ``"views": [x_query, x_key]`` (two augmentations of every sample) and the model gets
``model(x_query, key_view=x_key)``; the loss's classification terms use the query view's logits.
"""

from __future__ import annotations

from typing import Any

import torch

from Trainer.base import Trainer
from Trainer.registry import TRAINERS


@TRAINERS.register("ncl")
class NCLTrainer(Trainer):
    """:class:`Trainer` whose step feeds a second view (``batch["views"][1]``) to the key encoders."""

    def train_step(self, batch: dict[str, Any], epoch: int, step: int) -> dict[str, float]:
        views = batch.get("views")
        if not views or len(views) < 2:
            return super().train_step(batch, epoch, step)
        with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                            enabled=self.amp_dtype is not None):
            outputs = self.model(views[0], key_view=views[1])
            losses = self.loss_fn(outputs, batch)
        # training accuracy of the query view's logits (mean over experts), the view the loss sees
        return self.with_train_accuracy(self.backward_step(losses, epoch, step), outputs, batch)
