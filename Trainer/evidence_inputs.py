"""Training ICL's evidence inputs (``models.evidence_inputs``) with the rest of the model frozen.

Stage two of ``train_evidence.py`` (issue 23, part 2): the frontend, the projection, the CS head
and the experts stay as trained; only the maps from the indexing evidence into the crystal-system
branch and the gate learn, on *training* patterns whose evidence was computed the way it is at
test time (peaks picked on the rendered pattern, then indexed). Because the frozen parts do not
change, their outputs are computed once (``u``, ``cs_logits``, ``expert_logits``) and the
evidence inputs are trained on them with the model's own :meth:`heads`, full batch.

Objective: ICL's hierarchy terms, L_sys + L_sg: the cross-entropy of the crystal-system branch
(with the evidence) and of the gated ensemble masked by the TRUE crystal system (as ICL's L_sg).
The epoch kept is the best on the validation split's SG top-1 (ties: lower NLL).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from loguru import logger
from tqdm import tqdm

STORED = ("proj", "cs_logits", "expert_logits")


@torch.no_grad()
def frozen_outputs(model: Any, x: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """The frozen parts' outputs (``proj``, ``cs_logits``, ``expert_logits``) of patterns x (N, 1, L),
    on the model's device, without evidence."""
    was = model.training
    model.eval()
    device = next(model.parameters()).device
    acc: dict[str, list[torch.Tensor]] = {k: [] for k in STORED}
    for i in range(0, len(x), batch_size):
        out = model(x[i:i + batch_size].to(device))
        for k in STORED:
            acc[k].append(out[k].float())
    model.train(was)
    return {k: torch.cat(v) for k, v in acc.items()}


def hierarchy_loss(model: Any, out: dict[str, torch.Tensor], y_sg: torch.Tensor, y_cs: torch.Tensor
                   ) -> torch.Tensor:
    """L_sys + L_sg of the heads' outputs (L_sg: the ensemble masked by the true system)."""
    allowed = model.cs_sg_mask[y_cs]
    masked = out["ensemble_logits"].masked_fill(~allowed, -1e4)
    return F.cross_entropy(out["cs_logits"], y_cs) + F.cross_entropy(masked, y_sg)


@torch.no_grad()
def score(model: Any, data: dict[str, torch.Tensor]) -> tuple[float, float, float]:
    """(SG top-1, CS accuracy, NLL of the masked logits) of the heads with the evidence."""
    out = model.heads(data["proj"], data["cs_logits"], data["expert_logits"], data["evidence"])
    top1 = (out["logits"].argmax(1) == data["y_sg"]).float().mean().item()
    cs = (out["cs_logits"].argmax(1) == data["y_cs"]).float().mean().item()
    nll = F.cross_entropy(out["logits"].clamp_min(-1e3), data["y_sg"]).item()
    return top1, cs, nll


def train_evidence_inputs(model: Any, train: dict[str, torch.Tensor], val: dict[str, torch.Tensor],
                          epochs: int = 300, lr: float = 0.02, weight_decay: float = 1e-3,
                          seed: int = 0) -> dict[str, Any]:
    """Fit ``model.evidence_parameters()`` on ``train`` (keys: ``proj``, ``cs_logits``,
    ``expert_logits``, ``evidence``, ``y_sg``, ``y_cs``), keep the best epoch on ``val``.

    Returns the history: per-epoch train loss and val scores, the best epoch, and the val scores
    before training (the model without its evidence inputs' effect: they start at zero).
    """
    params = model.evidence_parameters()
    if not params:
        raise ValueError("train_evidence_inputs: the model has no evidence inputs (evidence_inputs=none)")
    torch.manual_seed(seed)
    frozen = [p for p in model.parameters() if all(p is not q for q in params)]
    for p in frozen:
        p.requires_grad_(False)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    start = score(model, val)
    best = (start[0], -start[2])
    best_state, best_epoch = copy.deepcopy(model.evidence_inputs.state_dict()), -1
    hist: dict[str, Any] = {"val_start": dict(zip(("sg_top1", "cs_acc", "nll"), start)), "epochs": []}
    for epoch in tqdm(range(epochs), desc="evidence inputs", leave=False):
        out = model.heads(train["proj"], train["cs_logits"], train["expert_logits"], train["evidence"])
        loss = hierarchy_loss(model, out, train["y_sg"], train["y_cs"])
        opt.zero_grad()
        loss.backward()
        opt.step()
        s = score(model, val)
        hist["epochs"].append({"epoch": epoch, "train_loss": float(loss.item()),
                               "val_sg_top1": s[0], "val_cs_acc": s[1], "val_nll": s[2]})
        if (s[0], -s[2]) > best:
            best, best_epoch = (s[0], -s[2]), epoch
            best_state = copy.deepcopy(model.evidence_inputs.state_dict())
    model.evidence_inputs.load_state_dict(best_state)
    for p in frozen:
        p.requires_grad_(True)
    end = score(model, val)
    hist.update(best_epoch=best_epoch, val_best=dict(zip(("sg_top1", "cs_acc", "nll"), end)))
    logger.info(f"evidence inputs trained ({len(train['y_sg'])} patterns, {epochs} epochs): val SG "
                f"top-1 {100 * start[0]:.1f} → {100 * end[0]:.1f} %, CS {100 * start[1]:.1f} → "
                f"{100 * end[1]:.1f} % (best epoch {best_epoch})")
    return hist


def as_tensors(arrays: dict[str, np.ndarray], device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """numpy arrays → tensors (labels long, the rest float32)."""
    return {k: torch.as_tensor(v, dtype=torch.long if k.startswith("y_") else torch.float32, device=device)
            for k, v in arrays.items()}
