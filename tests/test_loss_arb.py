"""ARB-Loss: hand values of the spec (docs/methods/arb.md §6), a naive ratio-form reference, the documented
reductions (docs/methods/conventions.md §7), mixup, buffers, errors and a 1-epoch run through train.main."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import train
from loss import LOSSES
from loss.arb import ARBLoss, arb_log_counts, arb_per_sample
from Trainer.arb import mixup_batch
from utils.errors import ConfigError


def naive_arb(z: np.ndarray, y: np.ndarray, n: np.ndarray) -> np.ndarray:
    """−log [exp(z_y) / Σ_j (n_j / n_y) exp(z_j)] per sample, by loops in float64 (the paper's form)."""
    out = []
    for zi, yi in zip(np.asarray(z, np.float64), y, strict=True):
        den = sum(n[j] / n[yi] * math.exp(zi[j]) for j in range(len(zi)))
        out.append(-math.log(math.exp(zi[yi]) / den))
    return np.array(out)


def _loss(mode="global", counts=(100, 10, 1), **kw) -> ARBLoss:
    return ARBLoss(torch.tensor(counts, dtype=torch.float32), count_mode=mode, **kw)


def _per_sample(loss: ARBLoss, z, y) -> torch.Tensor:
    z, y = torch.as_tensor(z, dtype=torch.float32), torch.as_tensor(y)
    return arb_per_sample(z, y, loss.log_counts(y))


def test_hand_example_of_the_spec():
    z = torch.tensor([[2.0, 0.0, -1.0]] * 3)
    y = torch.tensor([0, 1, 2])
    ce = F.cross_entropy(z, y, reduction="none")
    np.testing.assert_allclose(ce.numpy(), [0.169846, 2.169846, 3.169846], atol=1e-6)
    arb = _per_sample(_loss(), z, y)
    np.testing.assert_allclose(arb.numpy(), [0.013934, 4.316519, 7.619104], atol=1e-6)
    ref = naive_arb(z.numpy(), y.numpy(), np.array([100, 10, 1.0]))
    np.testing.assert_allclose(arb.numpy(), ref, atol=1e-6)
    out = _loss()({"logits": z}, {"y_sg": y})
    assert out["loss"].item() == pytest.approx(arb.mean().item(), abs=1e-6)


def test_batch_mode_hand_example():
    z = torch.tensor([[2.0, 0, -1], [0, 1, 0], [1, 1, 1]])
    y = torch.tensor([0, 0, 1])  # batch counts [2, 1, 0]
    loss = _loss("batch")
    np.testing.assert_allclose(_per_sample(loss, z, y).numpy(), [0.065476, 0.858298, 1.098612], atol=1e-6)
    assert loss({"logits": z}, {"y_sg": y})["loss"].item() == pytest.approx(0.674129, abs=1e-6)
    # class 2 is absent: its logit has no influence (not even through the gradient)
    z2 = z.clone().requires_grad_(True)
    loss({"logits": z2}, {"y_sg": y})["loss"].backward()
    assert torch.all(z2.grad[:, 2] == 0) and torch.isfinite(z2.grad).all()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_identity_with_logit_adjusted_ce_and_naive(seed):
    g = torch.Generator().manual_seed(seed)
    c = 7
    z = torch.randn(32, c, generator=g) * 3
    y = torch.randint(0, c, (32,), generator=g)
    n = torch.randint(1, 500, (c,), generator=g).float()
    loss = ARBLoss(n)
    got = loss({"logits": z}, {"y_sg": y})["loss"]
    assert got.item() == pytest.approx(F.cross_entropy(z + n.log(), y).item(), abs=1e-6)
    assert got.item() == pytest.approx(naive_arb(z.numpy(), y.numpy(), n.numpy()).mean(), abs=1e-5)


def test_uniform_counts_give_ce():
    g = torch.Generator().manual_seed(3)
    z, y = torch.randn(16, 5, generator=g), torch.randint(0, 5, (16,), generator=g)
    for const in (1.0, 7.0, 1000.0):
        got = ARBLoss(torch.full((5,), const))({"logits": z}, {"y_sg": y})["loss"]
        assert got.item() == pytest.approx(F.cross_entropy(z, y).item(), abs=1e-6)


def test_batch_mode_equals_global_when_histogram_is_proportional():
    counts = torch.tensor([300.0, 200.0, 100.0])
    y = torch.tensor([0, 0, 0, 1, 1, 2])  # 3 : 2 : 1, every class present
    z = torch.randn(6, 3, generator=torch.Generator().manual_seed(4))
    a = ARBLoss(counts, "batch")({"logits": z}, {"y_sg": y})["loss"]
    b = ARBLoss(counts, "global")({"logits": z}, {"y_sg": y})["loss"]
    assert a.item() == pytest.approx(b.item(), abs=1e-6)


def test_tau_generalisation_and_zero_counts():
    z = torch.tensor([[2.0, 0.0, -1.0]])
    y = torch.tensor([1])
    # τ = 0 is CE even with an absent class in batch mode (no 0·(−inf) = NaN)
    assert torch.equal(arb_log_counts(torch.tensor([2.0, 1.0, 0.0]), 0.0)[:2], torch.zeros(2))
    t0 = _loss(tau=0.0)({"logits": z}, {"y_sg": y})["loss"]
    assert t0.item() == pytest.approx(F.cross_entropy(z, y).item(), abs=1e-6)
    t2 = _loss(tau=2.0)({"logits": z}, {"y_sg": y})["loss"]
    assert t2.item() == pytest.approx(naive_arb(z.numpy(), y.numpy(), np.array([1e4, 100, 1.0]))[0], abs=1e-5)
    # global counts of 0 are clamped to 1: finite, and equal to counts of 1
    zero = _loss(counts=(5, 0, 3))({"logits": z}, {"y_sg": y})["loss"]
    one = _loss(counts=(5, 1, 3))({"logits": z}, {"y_sg": y})["loss"]
    assert torch.isfinite(zero) and zero.item() == pytest.approx(one.item())


def test_logit_clamp_kills_saturated_gradients():
    z = torch.tensor([[40.0, 0.0, -1.0]], requires_grad=True)
    y = torch.tensor([1])
    loss = _loss(logit_clamp=30.0)
    out = loss({"logits": z}, {"y_sg": y})["loss"]
    expect = naive_arb(np.array([[30.0, 0.0, -1.0]]), y.numpy(), np.array([100, 10, 1.0]))[0]
    assert out.item() == pytest.approx(expect, abs=1e-4)
    out.backward()
    assert z.grad[0, 0] == 0 and z.grad[0, 1] != 0


def test_mixup_loss_and_batch():
    g = torch.Generator().manual_seed(5)
    z, y = torch.randn(8, 3, generator=g), torch.tensor([0, 0, 0, 1, 1, 2, 0, 1])
    perm = torch.tensor([3, 2, 1, 0, 7, 6, 5, 4])
    for mode in ("global", "batch"):
        loss = _loss(mode)
        got = loss({"logits": z}, {"y_sg": y, "mix_index": perm, "mix_lam": torch.tensor(0.3)})["loss"]
        n = np.array([100, 10, 1.0]) if mode == "global" else np.bincount(y.numpy(), minlength=3) * 1.0
        expect = 0.3 * naive_arb(z.numpy(), y.numpy(), n).mean() + 0.7 * naive_arb(z.numpy(), y[perm].numpy(),
                                                                                    n).mean()
        assert got.item() == pytest.approx(expect, abs=1e-5)
    torch.manual_seed(0)
    batch = {"x": torch.randn(8, 1, 16), "y_sg": y, "y_cs": torch.zeros(8, dtype=torch.long),
             "idx": torch.arange(8)}
    mixed = mixup_batch(batch, 1.0)
    lam, p = mixed["mix_lam"], mixed["mix_index"]
    assert 0 <= lam <= 1 and sorted(p.tolist()) == list(range(8))
    torch.testing.assert_close(mixed["x"], lam * batch["x"] + (1 - lam) * batch["x"][p])
    assert torch.equal(mixed["y_sg"], y)


def test_buffers_round_trip_and_registry():
    a = LOSSES.build("arb", class_counts=torch.tensor([4.0, 2.0, 1.0]), count_mode="batch")
    b = ARBLoss(torch.ones(3))
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.class_counts, torch.tensor([4.0, 2.0, 1.0]))
    assert set(a.state_dict()) == {"class_counts"}
    assert ARBLoss.default_model == "linear" and ARBLoss.trainer == "arb"


@pytest.mark.parametrize("kw", [{"count_mode": "nope"}, {"logit_clamp": -1.0}, {"mixup_alpha": -0.5}])
def test_bad_settings_raise_config_error(kw):
    with pytest.raises(ConfigError, match="Fix:"):
        ARBLoss(torch.ones(3), **kw)
    with pytest.raises(ConfigError, match="class_counts"):
        ARBLoss(torch.ones(3, 2))


@pytest.mark.parametrize("extra", [[], ["--arb_count_mode", "batch", "--arb_mixup_alpha", "1.0"]],
                         ids=["global", "batch-mixup"])
def test_one_epoch_smoke(tiny_data, tmp_path, extra):
    res = train.main(["--data_dir", str(tiny_data), "--output_dir", str(tmp_path), "--device", "cpu",
                      "--batch_size", "16", "--width_mult", "0.125", "--use_adamw", "--epochs", "1",
                      "--seed", "3", "--method", "arb", *extra])
    run = Path(res["run_dir"])
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and np.isfinite(log[0]["train_loss"]) and "train_l_arb" in log[0]
    assert 0.0 <= res["test"]["sg_top1"] <= 1.0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert torch.equal(ckpt["loss"]["class_counts"].nonzero().flatten(),
                       torch.tensor([0, 13, 61, 138, 165, 193, 224]))
