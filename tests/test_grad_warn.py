"""The gradient-norm warning flags trouble, not initialisation (issue 12, item 3): steps of the first
epoch and of the lr warm-up, where a healthy network's pre-clip norm is routinely far above 100,
are not counted; later steps above --grad_warn_threshold are, with one warning per epoch."""

from __future__ import annotations

import numpy as np
import torch
from loguru import logger
from torch import nn

from Trainer import LRSchedule, Trainer

N_STEPS = 4


class Model(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 230)

    def forward(self, x):
        return {"logits": self.fc(x.flatten(1))}


class BigLoss(nn.Module):
    """CE times a constant: the pre-clip gradient norm is far above 100 at every step."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def on_epoch_start(self, epoch: int) -> None:
        pass

    def forward(self, outputs, batch):
        ce = nn.functional.cross_entropy(outputs["logits"], batch["y_sg"])
        return {"loss": self.scale * ce, "ce": ce.detach()}


def _trainer(warmup_epochs: float, scale: float = 1e5) -> Trainer:
    gen = torch.Generator().manual_seed(0)
    batches = [{"x": torch.randn(6, 1, 8, generator=gen), "y_sg": torch.randint(0, 230, (6,), generator=gen),
                "y_cs": torch.zeros(6, dtype=torch.long), "idx": torch.arange(6)} for _ in range(N_STEPS)]
    model = Model()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    return Trainer(model, BigLoss(scale), opt, LRSchedule(1e-3, 4, N_STEPS, warmup_epochs=warmup_epochs),
                   {"train": batches, "test": batches}, np.ones(230), None, epochs=4,
                   grad_warn_threshold=100.0, show_progress=False)


def _warnings(trainer: Trainer, epoch: int) -> tuple[int, list[str]]:
    got: list[str] = []
    handler = logger.add(lambda m: got.append(m.record["message"]), level="WARNING", format="{message}")
    try:
        rec = trainer.train_one_epoch(epoch)
    finally:
        logger.remove(handler)
    assert rec["train_grad_norm"] > 1000  # the norm really is large in every epoch
    return rec["grad_warn_steps"], got


def test_first_epoch_is_not_counted_later_epochs_are():
    trainer = _trainer(warmup_epochs=1.0)
    assert _warnings(trainer, 0) == (0, [])
    n, msgs = _warnings(trainer, 1)
    assert n == N_STEPS and len(msgs) == 1
    assert msgs[0].startswith(f"epoch 2: pre-clip grad norm above 100.0 in {N_STEPS}/{N_STEPS} steps")


def test_a_longer_warmup_is_not_counted_either():
    trainer = _trainer(warmup_epochs=1.5)  # steps 0-1 of epoch 2 are still warming up
    assert _warnings(trainer, 0)[0] == 0
    assert _warnings(trainer, 1)[0] == N_STEPS // 2
    assert _warnings(trainer, 2)[0] == N_STEPS


def test_without_warmup_the_first_epoch_is_still_exempt():
    trainer = _trainer(warmup_epochs=0.0)
    assert _warnings(trainer, 0)[0] == 0
    assert _warnings(trainer, 1)[0] == N_STEPS


def test_small_norms_never_warn():
    trainer = _trainer(warmup_epochs=0.0, scale=1.0)
    trainer.train_one_epoch(0)
    got: list[str] = []
    handler = logger.add(lambda m: got.append(m.record["message"]), level="WARNING", format="{message}")
    rec = trainer.train_one_epoch(1)
    logger.remove(handler)
    assert rec["grad_warn_steps"] == 0 and got == [] and rec["train_grad_norm"] < 100
