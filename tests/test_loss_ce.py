"""CELoss (loss/ce.py) against a naive loop."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from loss import LOSSES, CELoss, build_loss, ce_kwargs
from utils.errors import ConfigError


def naive_ce(logits, y, eps=0.0):
    tot = 0.0
    for row, t in zip(logits.tolist(), y.tolist()):
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        logp = [v - lse for v in row]
        tot += -(1 - eps) * logp[t] - eps / len(row) * sum(logp)
    return tot / len(y)


def _data(seed=0, b=7, c=230):
    g = torch.Generator().manual_seed(seed)
    logits = (2 * torch.randn(b, c, generator=g)).requires_grad_()
    y = torch.randint(0, c, (b,), generator=g)
    return {"logits": logits, "cs_logits": torch.randn(b, 7, requires_grad=True)}, {"y_sg": y}


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_ce_matches_naive(eps):
    out, batch = _data()
    res = CELoss(torch.ones(230), label_smoothing=eps)(out, batch)
    assert res["loss"].item() == pytest.approx(naive_ce(out["logits"].detach(), batch["y_sg"], eps), rel=1e-5)
    assert res["l_ce"].item() == res["loss"].item() and not res["l_ce"].requires_grad
    res["loss"].backward()
    assert out["logits"].grad.abs().sum() > 0 and out["cs_logits"].grad is None


def test_registry_flags_and_validation():
    p = argparse.ArgumentParser()
    CELoss.add_args(p)
    assert p.parse_args([]).label_smoothing == 0.0
    kw = ce_kwargs(p.parse_args(["--label_smoothing", "0.2"]))
    loss = build_loss("ce", class_counts=torch.ones(230), **kw)
    assert isinstance(loss, CELoss) and loss.label_smoothing == 0.2 and "ce" in LOSSES
    loss.on_epoch_start(0)  # always callable
    with pytest.raises(ConfigError):
        CELoss(label_smoothing=1.0)
