"""Training accuracy of one batch, from the outputs the training step already computed.

Kept in torch (no copy of the logits to the host): the Trainer adds these numbers to the step's
statistics, so ``log.jsonl`` holds ``train_sg_top1`` / ``train_cs_acc`` / ``train_cs_head_acc``
next to their validation counterparts, and underfitting can be told apart from a broken model.
"""

from __future__ import annotations

import torch

from utils.crystal import N_SG, SG_TO_CS

_SG_TO_CS = torch.as_tensor(SG_TO_CS, dtype=torch.long)


def batch_accuracy(logits: torch.Tensor, y_sg: torch.Tensor, cs_logits: torch.Tensor | None = None,
                   y_mix: torch.Tensor | None = None, lam: float | torch.Tensor = 1.0) -> dict[str, float]:
    """Top-1 accuracies of one training batch.

    Args:
        logits: (B, C) class scores (detached or not; nothing is back-propagated).
        y_sg: (B,) 0-based labels.
        cs_logits: optional (B, 7) crystal-system head scores.
        y_mix: (B,) labels of the second sample of a mixed batch (MixUp / CutMix), or None.
        lam: weight of ``y_sg`` in a mixed batch. A mixed sample counts
            ``lam·[pred = y_sg] + (1 − lam)·[pred = y_mix]`` (the usual mixup training accuracy:
            the expected accuracy against a label drawn with the mixing weights).

    Returns:
        ``{"sg_top1": ..., "cs_acc": ...}`` (fractions in [0, 1]; ``cs_acc`` is the crystal system
        of the SG argmax, as in validation) plus ``"cs_head_acc"`` when ``cs_logits`` is given.
        For label sets other than the 230 space groups (CIFAR-LT) only ``sg_top1`` (plain top-1).
    """
    with torch.no_grad():
        pred = logits.detach().argmax(dim=-1)
        lam_f = float(lam)
        n_sg = logits.shape[-1] == N_SG  # crystal systems exist only for the 230 space groups
        table = _SG_TO_CS.to(pred.device) if n_sg else None

        def hits(y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            cs = (table[pred] == table[y]).float() if n_sg else None
            return (pred == y).float(), cs

        top1, cs = hits(y_sg)
        if y_mix is not None:
            top1_b, cs_b = hits(y_mix)
            top1 = lam_f * top1 + (1.0 - lam_f) * top1_b
            cs = lam_f * cs + (1.0 - lam_f) * cs_b if cs is not None else None
        out = {"sg_top1": float(top1.mean())}
        if cs is not None:
            out["cs_acc"] = float(cs.mean())
            if cs_logits is not None:
                head = cs_logits.detach().argmax(dim=-1)
                right = (head == table[y_sg]).float()
                if y_mix is not None:
                    right = lam_f * right + (1.0 - lam_f) * (head == table[y_mix]).float()
                out["cs_head_acc"] = float(right.mean())
        return out
