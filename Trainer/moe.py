"""ICL's training loop, ``MoETrainer``: the generic loop plus what only the expert mixture has.

The seed's design names it: "a MoETrainer loop combines L_dol, L_hier and L_scl". The objective
itself lives in :class:`loss.icl.ICLLoss` (``--method icl``, docs/methods/icl.md); this class holds
the parts of the loop that only make sense for a gated mixture of experts, so that
:class:`Trainer.base.Trainer` stays generic:

* **gate usage** — the mean gate weight of every expert over the training batches
  (``train_gate_e0`` … in ``log.jsonl``, from the step's own outputs) and over the validation split
  (``val_gate_e*``), plus ``gate_active``, the number of experts that carry at least half their
  uniform share: a gate that collapses onto a few experts shows up epoch by epoch;
* **memory updates** — after every optimisation step the loss's batch memory (the hard-negative
  miner's EMA class prototypes and confusion counts, ``--lambda_hnm``) is updated from the step's
  detached features and predictions (``ICLLoss.update_memory``); evaluation never changes it;
* **classifier re-training** — while ``ICLLoss.retrain_active`` (the last ``--retrain_epochs``
  epochs) every parameter except the experts' classifiers is frozen; a resumed run re-freezes;
* **loss-component logging** — one line per epoch with L_dol, L_col, L_sys, L_sg, L_scl (and the
  active CIFAR extras) and the gate usage, under the epoch line.

Under torchrun: the gate means are reduced over ranks like every training meter; each rank updates
its loss memory from its own share (rank 0's is checkpointed); freezing for re-training changes
which parameters get gradients, so DDP then needs ``--ddp_find_unused_parameters``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from loguru import logger

from metrics import gate_usage
from Trainer.base import Trainer
from Trainer.registry import TRAINERS
from utils.distributed import is_main, unwrap

COMPONENTS = ("l_dol", "l_col", "l_sys", "l_sg", "l_scl", "l_par", "l_mutual", "l_div", "l_hnm")


def gate_active(means: list[float]) -> int:
    """Experts whose mean gate weight is at least half the uniform share 1/(2K)."""
    return sum(m >= 0.5 / len(means) for m in means) if means else 0


@TRAINERS.register("icl")
class MoETrainer(Trainer):
    """:class:`Trainer` for the rule-gated mixture of experts of ICL (``--method icl``).

    Same constructor as :class:`Trainer`. The model's outputs carry ``gate`` (B, K); the loss may
    offer ``update_memory(outputs, batch)`` and ``retrain_active``; the model may offer
    ``classifier_parameters()`` (the parameters that stay trainable while re-training).
    """

    frozen_for_retrain = False

    # ------------------------------------------------------------------ one step
    def train_step(self, batch: dict[str, Any], epoch: int, step: int) -> dict[str, float]:
        if getattr(self.loss_fn, "retrain_active", False) and not self.frozen_for_retrain:
            self._freeze_for_retrain(epoch)
        outputs, losses = self.forward_loss(batch)
        stats = self.backward_step(losses, epoch, step)
        if not stats:  # a skipped non-finite batch: no statistics, no memory update
            return stats
        gate = outputs.get("gate")
        if gate is not None:
            stats.update({f"gate_e{k}": float(m) for k, m in enumerate(gate.detach().float().mean(0))})
        update = getattr(self.loss_fn, "update_memory", None)
        if update is not None:
            update(outputs, batch)
        return self.with_train_accuracy(stats, outputs, batch)

    def _freeze_for_retrain(self, epoch: int) -> None:
        model = unwrap(self.model)
        keep_fn = getattr(model, "classifier_parameters", None)
        if keep_fn is None:
            raise TypeError(f"{type(model).__name__} has no classifier_parameters(): classifier "
                            "re-training (--retrain_epochs) needs the ICL mixture-of-experts model")
        keep = {id(p) for p in keep_fn()}
        n = 0
        for p in model.parameters():
            if id(p) not in keep and p.requires_grad:
                p.requires_grad_(False)
                n += 1
        self.frozen_for_retrain = True
        logger.info(f"epoch {epoch + 1}: classifier re-training, {n} parameter tensors frozen, "
                    f"{len(keep)} trained")

    # ------------------------------------------------------------------ epochs
    def train_one_epoch(self, epoch: int) -> dict[str, float]:
        avg = super().train_one_epoch(epoch)
        means = [avg[k] for k in sorted((k for k in avg if k.startswith("train_gate_e")),
                                        key=lambda k: int(k.rsplit("e", 1)[1]))]
        if means:
            avg["train_gate_active"] = float(gate_active(means))
        if is_main():
            parts = [f"{k} {avg['train_' + k]:.4f}" for k in COMPONENTS if f"train_{k}" in avg]
            if means:
                parts.append(f"gate {gate_active(means)}/{len(means)} experts active, weights "
                             + " ".join(f"{m:.2f}" for m in means))
            logger.info(f"epoch {epoch + 1}/{self.epochs} icl: " + " | ".join(parts))
        return avg

    def evaluate(self, loader: Iterable) -> dict[str, float]:
        """The base metrics plus the gate usage over ``loader`` (``gate_e*``, ``gate_active``)."""
        metrics = super().evaluate(loader)
        if "gate" in self.last_pred:
            metrics.update(gate_usage(self.last_pred["gate"]))
        return metrics

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self.frozen_for_retrain = False  # the next step re-freezes if the loss is re-training

