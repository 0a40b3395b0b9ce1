"""GH: ETF Gram, Sinkhorn marginals against a naive loop of the spec's iteration, hand values
(docs/methods/gh.md §6), NT-Xent against a double loop, the weight schedule, memory bank / prior, buffers
through state_dict, the online-probe model and a 1-epoch run through train.main."""

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
from loss.gh import GHLoss, etf_target, gh_swap_loss, gh_weight, nt_xent, sinkhorn
from models import create_model
from Trainer.gh import GHTrainer
from utils.errors import ConfigError, DataError


def naive_sinkhorn(t: np.ndarray, pi: np.ndarray, eps: float, iters: int) -> np.ndarray:
    """The spec's iteration written out with loops (float64)."""
    b, k = t.shape
    p = [[math.exp(t[i, j] / eps) for i in range(b)] for j in range(k)]  # (K, B)
    c = [1.0 / b] * b
    r = [0.0] * k
    for _ in range(iters):
        r = [pi[j] / sum(p[j][i] * c[i] for i in range(b)) for j in range(k)]
        c = [(1.0 / b) / sum(p[j][i] * r[j] for j in range(k)) for i in range(b)]
    return np.array([[b * r[j] * p[j][i] * c[i] for j in range(k)] for i in range(b)])


def naive_nt_xent(z1: np.ndarray, z2: np.ndarray, tau: float) -> float:
    z = np.concatenate([z1, z2]).astype(np.float64)
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        pos = i + n if i < n else i - n
        den = sum(math.exp(z[i] @ z[j] / tau) for j in range(2 * n) if j != i)
        total += -math.log(math.exp(z[i] @ z[pos] / tau) / den)
    return total / (2 * n)


@pytest.mark.parametrize("k,d", [(3, 3), (5, 8), (10, 128), (230, 256)])
def test_etf_gram(k, d):
    m = etf_target(k, d).double()
    gram = m @ m.T
    expect = k / (k - 1) * torch.eye(k, dtype=torch.float64) - 1.0 / (k - 1)
    torch.testing.assert_close(gram, expect, atol=1e-5, rtol=0)
    if k == 3:
        assert gram[0, 1].item() == pytest.approx(-0.5, abs=1e-6) and gram[0, 0].item() == pytest.approx(1.0)
    torch.testing.assert_close(etf_target(k, d), etf_target(k, d))  # reproducible
    with pytest.raises(ConfigError, match="gh_proj_dim"):
        etf_target(d + 1, d)


def test_sinkhorn_marginals_and_naive_reference():
    g = torch.Generator().manual_seed(0)
    b, k = 24, 5
    t = F.normalize(torch.randn(b, k, generator=g), dim=1)
    pi = torch.tensor([0.4, 0.25, 0.15, 0.12, 0.08])
    q = sinkhorn(t, pi, 0.05, 300)
    torch.testing.assert_close(q.sum(1), torch.ones(b), atol=1e-5, rtol=0)
    torch.testing.assert_close(q.sum(0), b * pi, atol=1e-3, rtol=0)
    np.testing.assert_allclose(q.numpy(), naive_sinkhorn(t.double().numpy(), pi.double().numpy(), 0.05, 300),
                               atol=1e-5)
    assert not q.requires_grad and (q >= 0).all()


def test_sinkhorn_identical_rows_give_prior():
    pi = torch.tensor([0.5, 0.3, 0.2])
    t = F.normalize(torch.tensor([[0.3, -0.2, 0.9]]), dim=1).repeat(6, 1)
    q = sinkhorn(t, pi, 0.05, 300)
    torch.testing.assert_close(q, pi.expand(6, 3), atol=1e-5, rtol=0)


def test_gh_hand_example():
    t = torch.full((2, 2), 0.707107)
    q = sinkhorn(t, torch.tensor([0.5, 0.5]), 0.05, 300)
    torch.testing.assert_close(q, torch.full((2, 2), 0.5))
    torch.testing.assert_close(F.softmax(t / 0.1, dim=1), torch.full((2, 2), 0.5))
    assert gh_swap_loss(t, t, q, q, 0.1).item() == pytest.approx(1.386294, abs=1e-6)


def test_gh_weight_schedule():
    assert [gh_weight(e, 500, 10) for e in (500, 501, 510, 511)] == pytest.approx([0.0, 0.1, 1.0, 1.0])
    assert gh_weight(3, 2, 0) == 1.0 and gh_weight(2, 2, 0) == 0.0


def test_nt_xent_against_double_loop():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    assert nt_xent(z1, z2, 0.2).item() == pytest.approx(naive_nt_xent(z1.numpy(), z2.numpy(), 0.2), abs=1e-5)


def _loss(**kw) -> GHLoss:
    base = dict(class_counts=torch.tensor([6.0, 3.0, 1.0]), epochs=10, target_dim=3, proj_dim=4,
                warmup_frac=0.2, ramp_epochs=2, prior_every=3)
    base.update(kw)
    return GHLoss(**base)


def _outputs(b: int, seed: int = 0, c: int = 3, d: int = 4):
    g = torch.Generator().manual_seed(seed)
    return {"proj": torch.randn(2 * b, d, generator=g, requires_grad=True),
            "logits": torch.randn(2 * b, c, generator=g, requires_grad=True)}


@pytest.mark.parametrize("mode", ["supervised", "ssl"])
def test_forward_matches_composition_of_the_formulas(mode):
    loss = _loss(mode=mode, lambda_ssl=0.7)
    loss.on_epoch_start(2)   # W = 2: epoch index 2 is 1-based epoch 3 → w = (3 − 2)/2 = 0.5
    loss.prior.copy_(torch.tensor([0.5, 0.3, 0.2]))
    out = _outputs(5)
    y, idx = torch.tensor([0, 1, 2, 0, 0]), torch.arange(5)
    got = loss(out, {"y_sg": y, "idx": idx})
    z1, z2 = out["proj"][:5].detach(), out["proj"][5:].detach()
    t1, t2 = F.normalize(z1 @ loss.etf.T, dim=1), F.normalize(z2 @ loss.etf.T, dim=1)
    q1 = naive_sinkhorn(t1.double().numpy(), np.array([0.5, 0.3, 0.2]), 0.05, 300)
    q2 = naive_sinkhorn(t2.double().numpy(), np.array([0.5, 0.3, 0.2]), 0.05, 300)
    lsm = lambda t: F.log_softmax(t / 0.1, dim=1).double().numpy()  # noqa: E731
    l_gh = -(q1 * lsm(t2)).sum(1).mean() - (q2 * lsm(t1)).sum(1).mean()
    l_ssl = naive_nt_xent(z1.numpy(), z2.numpy(), 0.2)
    ce = F.cross_entropy(out["logits"].detach(), torch.cat([y, y])).item()
    expect = ce + (0.7 if mode == "supervised" else 1.0) * l_ssl + 0.5 * l_gh
    assert got["loss"].item() == pytest.approx(expect, abs=1e-4)
    assert got["l_gh"].item() == pytest.approx(l_gh, abs=1e-4) and got["gh_weight"].item() == 0.5
    assert ("l_sup" if mode == "supervised" else "l_probe") in got
    got["loss"].backward()
    assert torch.isfinite(out["proj"].grad).all()


def test_bank_prior_and_refresh_schedule():
    loss = _loss()                                        # W = 2, refresh every 3 epochs after
    loss.on_epoch_start(0)
    out = _outputs(4, seed=2)
    idx = torch.tensor([0, 2, 4, 6])
    loss(out, {"y_sg": torch.zeros(4, dtype=torch.long), "idx": idx})
    t1 = F.normalize(out["proj"][:4].detach() @ loss.etf.T, dim=1)
    torch.testing.assert_close(loss.bank[idx], t1)        # first visit: stored as is
    assert loss.seen.sum() == 4 and (loss.bank[1] == 0).all()
    out2 = _outputs(4, seed=3)
    loss(out2, {"y_sg": torch.zeros(4, dtype=torch.long), "idx": idx})
    t1b = F.normalize(out2["proj"][:4].detach() @ loss.etf.T, dim=1)
    torch.testing.assert_close(loss.bank[idx], 0.9 * t1 + 0.1 * t1b)   # warm-up β = 0.9
    # refreshes happen at epoch index 2 (end of warm-up) and 5, 8 — not at 1, 3, 4
    refreshed = []
    for e in range(9):
        loss.prior.fill_(-1.0)
        loss.on_epoch_start(e)
        refreshed.append(bool((loss.prior >= 0).all()))
    assert [e for e, r in enumerate(refreshed) if r] == [2, 5, 8]
    expect = np.bincount(loss.bank[loss.seen].argmax(1).numpy(), minlength=3) / 4.0
    np.testing.assert_allclose(loss.prior.numpy(), expect)
    loss.prior_floor = 2.0
    floor = loss.refresh_prior()
    np.testing.assert_allclose(floor.numpy(), (np.bincount(loss.bank[loss.seen].argmax(1).numpy(),
                                                           minlength=3) + 2) / 10.0, rtol=1e-6)
    loss.current_epoch.fill_(4)                           # after warm-up: β = beta (0.999)
    before = loss.bank[idx].clone()
    out3 = _outputs(4, seed=4)
    loss(out3, {"y_sg": torch.zeros(4, dtype=torch.long), "idx": idx})
    t1c = F.normalize(out3["proj"][:4].detach() @ loss.etf.T, dim=1)
    torch.testing.assert_close(loss.bank[idx], 0.999 * before + 0.001 * t1c)


def test_buffers_round_trip_including_a_grown_bank():
    a = _loss()
    a.on_epoch_start(3)
    a(_outputs(3), {"y_sg": torch.tensor([0, 1, 2]), "idx": torch.tensor([1, 15, 30])})  # N = 10 → grows
    assert a.bank.shape == (31, 3)
    a.refresh_prior()
    b = _loss()
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        assert torch.equal(b.state_dict()[k], v), k
    assert set(a.state_dict()) == {"etf", "bank", "seen", "prior", "current_epoch"}


def test_errors():
    loss = _loss()
    with pytest.raises(DataError, match="two stacked views"):
        loss({"logits": torch.zeros(3, 3)}, {"y_sg": torch.zeros(3, dtype=torch.long),
                                             "idx": torch.arange(3)})
    with pytest.raises(ConfigError, match="gh_proj_dim"):
        _loss(target_dim=8, proj_dim=4)
    with pytest.raises(ConfigError, match="gh_mode"):
        _loss(mode="both")
    with pytest.raises(ConfigError, match="gh_epsilon"):
        _loss(epsilon=0.0)
    out = _outputs(2, d=5)
    with pytest.raises(ConfigError, match="gh_proj_dim"):
        loss(out, {"y_sg": torch.zeros(2, dtype=torch.long), "idx": torch.arange(2)})
    trainer = GHTrainer.__new__(GHTrainer)
    with pytest.raises(ConfigError, match="two views"):
        trainer.train_step({"x": torch.zeros(2, 1, 8)}, 0, 0)


def test_gh_linear_online_probe_detaches_the_encoder():
    kw = dict(frontend="restcn", frontend_kwargs={"width_mult": 0.125}, num_classes=5, proj_dim=8)
    probe = create_model("gh_linear", detach_classifier=True, **kw)
    out = probe(torch.randn(4, 1, 64))
    assert out["logits"].shape == (4, 5) and out["proj"].shape == (4, 8)
    out["logits"].sum().backward()
    assert all(p.grad is None for p in probe.frontend.parameters()) and probe.fc.weight.grad is not None
    probe.eval()
    assert "proj" not in probe(torch.randn(2, 1, 64))
    full = create_model("gh_linear", **kw)
    full(torch.randn(4, 1, 64))["logits"].sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in full.frontend.parameters())


@pytest.mark.parametrize("mode", ["supervised", "ssl"])
def test_one_epoch_smoke(tiny_data, tmp_path, mode):
    assert LOSSES.get("gh").n_views == 2
    res = train.main(["--data_dir", str(tiny_data), "--output_dir", str(tmp_path), "--device", "cpu",
                      "--batch_size", "16", "--width_mult", "0.125", "--use_adamw", "--epochs", "1",
                      "--seed", "3", "--method", "gh", "--gh_mode", mode, "--gh_warmup_frac", "0",
                      "--gh_ramp_epochs", "0"])
    run = Path(res["run_dir"])
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and np.isfinite(log[0]["train_loss"])
    assert log[0]["train_gh_weight"] == 1.0 and log[0]["train_l_gh"] > 0
    ckpt = torch.load(run / "last.pt", weights_only=True)
    assert ckpt["loss"]["seen"].sum() > 0 and ckpt["loss"]["etf"].shape == (230, 256)
    assert ckpt["model_config"]["name"] == "gh_linear"
    assert ckpt["model_config"]["detach_classifier"] == (mode == "ssl")


@pytest.mark.slow
def test_resume_equals_uninterrupted(tiny_data, tmp_path):
    """W = 1 of 2 epochs: the prior refresh at the start of epoch 2 reads the bank from last.pt."""
    def run(name, *extra):
        return train.main(["--data_dir", str(tiny_data), "--run_dir", str(tmp_path / name),
                           "--device", "cpu",
                           "--batch_size", "16", "--width_mult", "0.125", "--use_adamw", "--epochs", "2",
                           "--seed", "4", "--method", "gh", "--gh_ramp_epochs", "0", *extra])
    run("A")
    assert run("B", "--stop_after_epoch", "1")["test"] is None
    run("B", "--resume", "auto")
    a = torch.load(tmp_path / "A" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "B" / "last.pt", weights_only=True)
    for k, v in a["loss"].items():
        torch.testing.assert_close(b["loss"][k], v, rtol=0, atol=1e-6, msg=k)
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1e-6, msg=k)
    la = [json.loads(x) for x in (tmp_path / "A" / "log.jsonl").read_text().splitlines()]
    assert la[1]["train_gh_weight"] == 1.0
    assert not torch.equal(a["loss"]["prior"], torch.full((230,), 1 / 230))   # refreshed from the bank
