"""Inference over a loader and the metric summary; used by the Trainer and by ``test.py``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from metrics import summarize
from utils.distributed import broadcast_module, gather_interleaved, unwrap

KEEP = ("logits", "cs_logits", "gate", "ensemble_logits", "expert_logits")


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else
                [t.to(device) for t in v] if isinstance(v, list) else v) for k, v in batch.items()}


class Evaluator:
    """Runs a model in eval mode and summarises its predictions.

    Args:
        model: maps ``x`` (B,1,L) to an outputs dict with ``logits`` (B,230).
        class_counts: (230,) training counts (many/medium/few groups).
        device: where the model lives.
        amp_dtype: autocast dtype or None.
    """

    def __init__(self, model: nn.Module, class_counts: np.ndarray, device: torch.device | str = "cpu",
                 amp_dtype: torch.dtype | None = None, show_progress: bool = False) -> None:
        self.model, self.class_counts = model, np.asarray(class_counts)
        self.device, self.amp_dtype, self.show_progress = torch.device(device), amp_dtype, show_progress

    @torch.no_grad()
    def predict(self, loader: Iterable, keep_inputs: bool = False,
                evidence: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Stacked numpy ``logits`` (N,230), ``cs_logits``, ``gate`` and labels ``y_sg``/``y_cs``/``idx``;
        with ``keep_inputs`` also the patterns ``x`` (N,1,L) as evaluated (for the indexing evidence).
        ``evidence`` (N, 110), in the loader's order: the indexing evidence of the same patterns,
        passed to a model that takes it (``model.uses_evidence``; ``models.evidence_inputs``).

        A loader whose sampler is sharded over ranks (``num_replicas`` > 1, ``total`` items: see
        ``datasets.samplers.ShardSampler``) makes this a collective call: every rank predicts its
        share with rank 0's buffers, and every rank returns the whole split in order.
        """
        model = unwrap(self.model)  # the bare model: no DDP collectives per forward
        sampler = getattr(loader, "sampler", None)
        sharded = getattr(sampler, "num_replicas", 1) > 1
        if sharded:
            broadcast_module(model, buffers_only=True)
        takes_evidence = evidence is not None and getattr(model, "uses_evidence", False)
        if takes_evidence and sharded:
            raise NotImplementedError("evaluation with evidence inputs runs on one process: evaluate "
                                      "with test.py --ckpt (one process)")
        done = 0
        was_training = model.training
        model.eval()
        acc: dict[str, list[np.ndarray]] = {}
        for batch in tqdm(loader, desc="eval", leave=False, disable=not self.show_progress):
            batch = to_device(batch, self.device)
            with torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                                enabled=self.amp_dtype is not None):
                if takes_evidence:
                    n = len(batch["x"])
                    ev = torch.as_tensor(evidence[done:done + n], dtype=torch.float32, device=self.device)
                    out = model(batch["x"], evidence=ev)
                    done += n
                else:
                    out = model(batch["x"])
            for k in KEEP:
                if k in out:
                    acc.setdefault(k, []).append(out[k].float().cpu().numpy())
            for k in ("y_sg", "y_cs", "idx") + (("x",) if keep_inputs else ()):
                v = batch[k].float() if k == "x" else batch[k]
                acc.setdefault(k, []).append(v.cpu().numpy())
        model.train(was_training)
        if takes_evidence and done != len(evidence):
            raise ValueError(f"Evaluator.predict: {len(evidence)} evidence rows for {done} patterns")
        pred = {k: np.concatenate(v) for k, v in acc.items()}
        if sharded:  # sorted: every rank gathers the keys in the same order
            pred = {k: gather_interleaved(v, sampler.total) for k, v in sorted(pred.items())}
        return pred

    def summarize(self, pred: dict[str, np.ndarray]) -> dict[str, float]:
        """The metric summary (a mixture's gate usage is added by ``Trainer.moe.MoETrainer``)."""
        return summarize(pred["logits"], pred["y_sg"], self.class_counts, cs_logits=pred.get("cs_logits"),
                         ensemble_logits=pred.get("ensemble_logits"),
                         expert_logits=pred.get("expert_logits"))

    def evaluate(self, loader: Iterable) -> dict[str, float]:
        return self.summarize(self.predict(loader))
