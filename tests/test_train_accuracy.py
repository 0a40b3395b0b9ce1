"""Training accuracy (issue 10, item 1): ``metrics.batch.batch_accuracy`` against hand counts, and
the Trainer's ``train_sg_top1`` / ``train_cs_acc`` in ``log.jsonl`` equal to the accuracy of the
outputs the steps produced (a model whose logits are its input, so the answer is known)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from metrics.batch import batch_accuracy
from Trainer import TRAINERS, LRSchedule
from utils.crystal import N_SG, SG_TO_CS


def _onehot_logits(pred: list[int], n: int = N_SG) -> torch.Tensor:
    z = torch.zeros(len(pred), n)
    z[torch.arange(len(pred)), torch.tensor(pred)] = 5.0
    return z


def test_batch_accuracy_hand_counts():
    # 0-based groups: 0 (P1, triclinic), 1 (P-1, triclinic), 13 (P2_1/c, monoclinic), 224 (Pm-3m, cubic)
    y = torch.tensor([0, 13, 224, 224])
    pred = [0, 13, 1, 13]          # right, right, wrong (triclinic for cubic), wrong (monoclinic)
    out = batch_accuracy(_onehot_logits(pred), y)
    assert out["sg_top1"] == pytest.approx(2 / 4)
    cs_hits = sum(SG_TO_CS[p] == SG_TO_CS[t] for p, t in zip(pred, y.tolist(), strict=True))
    assert out["cs_acc"] == pytest.approx(cs_hits / 4) and cs_hits == 2
    assert "cs_head_acc" not in out
    # 1 (P-1) for 0 (P1): wrong group, right crystal system
    out = batch_accuracy(_onehot_logits([1, 13]), torch.tensor([0, 13]))
    assert out == {"sg_top1": 0.5, "cs_acc": 1.0}
    # CS head: systems of y are [0, 1, 6, 6]; head says [0, 6, 6, 2]
    cs_logits = F.one_hot(torch.tensor([0, 6, 6, 2]), 7).float()
    assert batch_accuracy(_onehot_logits(pred), y, cs_logits)["cs_head_acc"] == pytest.approx(2 / 4)


def test_batch_accuracy_mixed_and_other_label_sets():
    y_a, y_b = torch.tensor([0, 13, 224]), torch.tensor([13, 13, 0])
    pred = [13, 13, 224]           # vs a: 0,1,1 ; vs b: 1,1,0
    out = batch_accuracy(_onehot_logits(pred), y_a, y_mix=y_b, lam=0.7)
    assert out["sg_top1"] == pytest.approx((0.7 * 2 + 0.3 * 2) / 3)
    # λ = 1 is the plain accuracy; λ = 0 scores against the second labels only
    assert batch_accuracy(_onehot_logits(pred), y_a, y_mix=y_b, lam=1.0)["sg_top1"] == pytest.approx(2 / 3)
    assert batch_accuracy(_onehot_logits(pred), y_a, y_mix=y_b, lam=0.0)["sg_top1"] == pytest.approx(2 / 3)
    assert batch_accuracy(_onehot_logits([2, 1], n=10), torch.tensor([2, 3])) == {"sg_top1": 0.5}


class _InputIsLogits(nn.Module):
    """logits = x[:, 0] (B, 230) + 0·w: the prediction is fixed by the data, whatever the step does."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"logits": x[:, 0] + 0.0 * self.w}


class _CE(nn.Module):
    def forward(self, outputs, batch):
        loss = F.cross_entropy(outputs["logits"], batch["y_sg"])
        return {"loss": loss}

    def on_epoch_start(self, epoch: int) -> None:
        pass


def _loader(pred: np.ndarray, y: np.ndarray, batch_size: int):
    items = [{"x": _onehot_logits([int(p)])[0][None], "y_sg": int(t), "y_cs": int(SG_TO_CS[t]), "idx": i}
             for i, (p, t) in enumerate(zip(pred, y, strict=True))]
    return torch.utils.data.DataLoader(items, batch_size=batch_size, shuffle=False)


@pytest.mark.parametrize("trainer", ["default", "arb"])
def test_trainer_logs_train_accuracy_of_its_batches(tmp_path, trainer):
    rng = np.random.default_rng(0)
    y = rng.integers(0, N_SG, 48)
    pred = np.where(rng.random(48) < 0.4, y, rng.integers(0, N_SG, 48))   # ~40 % right
    loaders = {"train": _loader(pred, y, 16), "test": _loader(pred[:8], y[:8], 8)}
    model, loss = _InputIsLogits(), _CE()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    t = TRAINERS.get(trainer)(model, loss, opt, LRSchedule(0.1, 1, 3, warmup_epochs=0), loaders,
                              np.ones(N_SG), tmp_path, epochs=1, show_progress=False)
    t.fit()
    rec = json.loads((tmp_path / "log.jsonl").read_text().splitlines()[-1])
    assert rec["train_sg_top1"] == pytest.approx(np.mean(pred == y))
    assert rec["train_cs_acc"] == pytest.approx(np.mean(SG_TO_CS[pred] == SG_TO_CS[y]))
    assert rec["train_sg_top1"] < rec["train_cs_acc"]  # the fixture is not degenerate


def test_mixed_and_stacked_outputs_are_scored_as_documented():
    y = torch.tensor([0, 13, 224, 224])
    stats = {"loss": 1.0}
    # ARB mixup batch: mix_index/mix_lam in the batch
    batch = {"y_sg": y, "mix_index": torch.tensor([1, 0, 3, 2]), "mix_lam": torch.tensor(0.25)}
    logits = _onehot_logits([13, 13, 224, 0])
    out = TRAINERS.get("default").with_train_accuracy(dict(stats), {"logits": logits}, batch)
    # vs y: 0,1,1,0 ; vs y[perm] = [13, 0, 224, 224]: 1,0,1,0
    assert out["sg_top1"] == pytest.approx((0.25 * 2 + 0.75 * 2) / 4)
    # two stacked views (GH): only the first B rows count
    logits = torch.cat([_onehot_logits([0, 13, 224, 224]), _onehot_logits([5, 5, 5, 5])])
    out = TRAINERS.get("gh").with_train_accuracy(dict(stats), {"logits": logits}, {"y_sg": y})
    assert out["sg_top1"] == 1.0
    # a skipped step stays empty
    assert TRAINERS.get("default").with_train_accuracy({}, {"logits": logits}, {"y_sg": y}) == {}
