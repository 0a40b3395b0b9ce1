"""NCLLoss (loss/ncl.py) against the spec's hand example and naive loops written here
(docs/methods/ncl.md §1, §6; docs/methods/conventions.md §7 oracles)."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from loss import LOSSES, NCLLoss, build_loss, ncl_kwargs
from loss.ncl import hcm_mask, nbod
from utils.errors import ConfigError

# ------------------------------------------------------------------ naive references (spec §1)


def naive_mask(z0, y, n_hcm):
    """Per row: sort classes by score with the target forced first, keep the first n_hcm."""
    mask = torch.zeros_like(z0)
    for b in range(z0.shape[0]):
        scores = z0[b].tolist()
        scores[int(y[b])] = 999999.0
        order = sorted(range(len(scores)), key=lambda c: -scores[c])
        for c in order[:n_hcm]:
            mask[b, c] = 1.0
    return mask


def naive_d(us, alpha):
    """α/(K−1) Σ_i Σ_{j≠i} KL(softmax u_j ‖ softmax u_i), student log(p + 1e-9), batch-mean KL."""
    k = len(us)
    if k == 1:
        return torch.zeros(())
    p = [F.softmax(u, dim=1) for u in us]
    lq = [torch.log(q + 1e-9) for q in p]
    tot = 0.0
    for i in range(k):
        for j in range(k):
            if i != j:
                tot = tot + alpha * F.kl_div(lq[i], p[j], reduction="batchmean")
    return tot / (k - 1)


def naive_restricted(us, y, mask, alpha):
    """Restricted softmax over S(x), sample by sample: (Σ_k CE, D_α)."""
    b_n, k = us[0].shape[0], len(us)
    ce, d = 0.0, 0.0
    for b in range(b_n):
        s = mask[b].bool()
        pos = int(torch.nonzero(torch.nonzero(s)[:, 0] == int(y[b]))[0, 0])
        logp = [F.log_softmax(u[b][s], dim=0) for u in us]
        for i in range(k):
            ce = ce - logp[i][pos] / b_n
            for j in range(k):
                if i != j:
                    pj = logp[j].exp()
                    d = d + alpha / (k - 1) * (pj * (logp[j] - torch.log(logp[i].exp() + 1e-9))).sum() / b_n
    return ce, d


def naive_loss(z, y, counts, n_hcm, mode="multiply", alpha=0.6, alpha_hcm=0.6, r_ce=1.0, r_hcm=1.0):
    """The reference NIL_NBOD written out (list of experts, Python loops)."""
    us = [z[:, k] for k in range(z.shape[1])]
    logn = torch.log(torch.clamp(torch.as_tensor(counts, dtype=torch.float32), min=1))
    mask = naive_mask(us[0].detach(), y, n_hcm)
    bal = [u + logn for u in us]
    ce = sum(F.cross_entropy(u, y) for u in bal)
    if mode == "multiply":
        hard = [u * mask for u in bal]
        ce_h = sum(F.cross_entropy(u, y) for u in hard)
        d_h = naive_d(hard, alpha_hcm)
    else:
        ce_h, d_h = naive_restricted(bal, y, mask, alpha_hcm)
    return r_ce * ce + r_hcm * ce_h + naive_d(bal, alpha) + d_h


def _inputs(b=5, k=3, c=20, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    z = (scale * torch.randn(b, k, c, generator=g)).requires_grad_()
    y = torch.randint(0, c, (b,), generator=g)
    counts = torch.randint(0, 300, (c,), generator=g).numpy()   # includes empty classes sometimes
    counts[0] = 0
    return z, y, counts


# ------------------------------------------------------------------ golden values and references


def test_hand_example_of_the_spec():
    loss = NCLLoss([100, 10, 1], n_hcm=2)
    z = torch.tensor([[[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]]])
    out = loss({"expert_logits": z}, {"y_sg": torch.tensor([1])})
    assert hcm_mask(z[:, 0], torch.tensor([1]), 2).tolist() == [[True, True, False]]
    expect = {"l_nil_ce": 5.867391, "l_nil_hcm": 5.868235, "l_nbod": 0.370849, "l_nbod_hcm": 0.365472,
              "loss": 12.471946}
    for k, v in expect.items():
        assert out[k].item() == pytest.approx(v, abs=2e-6), k


@pytest.mark.parametrize("mode", ["multiply", "restrict"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_loss_and_gradient_match_naive(mode, k):
    z, y, counts = _inputs(k=k, seed=k)
    kw = dict(alpha=0.6, alpha_hcm=0.3, ce_ratio=1.0, hcm_ratio=0.7)
    out = NCLLoss(counts, n_hcm=6, hcm_mode=mode, **kw)({"expert_logits": z}, {"y_sg": y})
    (g_ours,) = torch.autograd.grad(out["loss"], z)
    ref = naive_loss(z, y, counts, 6, mode, alpha=0.6, alpha_hcm=0.3, r_ce=1.0, r_hcm=0.7)
    (g_ref,) = torch.autograd.grad(ref, z)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-5, abs=1e-5)
    # gradients through student AND target distributions (no detach anywhere), as in the reference
    torch.testing.assert_close(g_ours, g_ref, rtol=1e-4, atol=1e-5)
    for key in ("l_nil", "l_nbod", "l_nbod_hcm", "l_con"):
        assert not out[key].requires_grad


def test_nbod_matches_pairwise_kl_loop():
    g = torch.Generator().manual_seed(4)
    u = 5 * torch.randn(6, 4, 30, generator=g)
    ref = naive_d([u[:, i] for i in range(4)], 1.0)
    assert nbod(u, 1.0).item() == pytest.approx(ref.item(), rel=1e-5)


# ------------------------------------------------------------------ docs/methods/conventions.md §7 oracles


def test_single_expert_has_no_nbod_and_is_ce_plus_hard_ce():
    z, y, counts = _inputs(k=1)
    out = NCLLoss(counts, n_hcm=5)({"expert_logits": z}, {"y_sg": y})
    assert out["l_nbod"].item() == 0.0 and out["l_nbod_hcm"].item() == 0.0
    logn = torch.log(torch.clamp(torch.as_tensor(counts, dtype=torch.float32), min=1))
    mask = naive_mask(z[:, 0].detach(), y, 5)
    ref = F.cross_entropy(z[:, 0] + logn, y) + F.cross_entropy((z[:, 0] + logn) * mask, y)
    assert out["loss"].item() == pytest.approx(ref.item(), rel=1e-6)


@pytest.mark.parametrize("mode", ["multiply", "restrict"])
def test_identical_experts_have_zero_nbod(mode):
    z, y, counts = _inputs(k=1)
    same = z.detach().expand(-1, 3, -1)
    out = NCLLoss(counts, n_hcm=7, hcm_mode=mode)({"expert_logits": same}, {"y_sg": y})
    assert abs(out["l_nbod"].item()) < 1e-6 and abs(out["l_nbod_hcm"].item()) < 1e-6


def test_all_classes_hard_equals_nil_in_multiply_mode():
    z, y, counts = _inputs(c=12)
    out = NCLLoss(counts, n_hcm=12)({"expert_logits": z}, {"y_sg": y})
    assert out["l_nil_hcm"].item() == pytest.approx(out["l_nil_ce"].item(), rel=1e-6)
    assert out["l_nbod_hcm"].item() == pytest.approx(out["l_nbod"].item(), rel=1e-6)


@pytest.mark.parametrize("seed", range(5))
def test_mask_contains_target_has_n_entries_and_uses_raw_expert0(seed):
    z, y, counts = _inputs(b=16, c=40, seed=seed)
    z = z.detach()
    m = hcm_mask(z[:, 0], y, 9)
    assert m[torch.arange(16), y].all() and (m.sum(1) == 9).all()
    assert torch.equal(m.float(), naive_mask(z[:, 0], y, 9))
    # the target is in S(x) even when it is the lowest-scoring class
    low = z[:, 0].clone()
    low[torch.arange(16), y] = -1e6
    assert hcm_mask(low, y, 9)[torch.arange(16), y].all()


def test_mask_comes_from_raw_logits_of_expert_0():
    # raw z_0 ranks class 1 above class 0; balanced (log 1000 added to class 0) would pick class 0
    counts = [1000, 1, 1]
    z = torch.tensor([[[0.0, 1.0, 0.5], [3.0, -2.0, 0.0]]])
    y = torch.tensor([2])
    out = NCLLoss(counts, n_hcm=2)({"expert_logits": z}, {"y_sg": y})
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    bal = z + torch.log(torch.tensor([1000.0, 1.0, 1.0]))
    ref = sum(F.cross_entropy(bal[:, k] * mask, y) for k in range(2))
    assert out["l_nil_hcm"].item() == pytest.approx(ref.item(), rel=1e-6)


def test_uniform_counts_reduce_nil_to_plain_ce():
    z, y, _ = _inputs()
    out = NCLLoss(np.full(20, 7), n_hcm=4)({"expert_logits": z}, {"y_sg": y})
    ref = sum(F.cross_entropy(z[:, k], y) for k in range(3))
    assert out["l_nil_ce"].item() == pytest.approx(ref.item(), rel=1e-6)


def test_empty_classes_are_clamped_and_restrict_mode_stays_finite():
    z, y, _ = _inputs(scale=40.0)               # saturated softmaxes: underflow to exact zeros
    counts = np.zeros(20)
    counts[:3] = [500, 5, 1]
    for mode in ("multiply", "restrict"):
        zz = z.detach().clone().requires_grad_()
        out = NCLLoss(counts, n_hcm=4, hcm_mode=mode)({"expert_logits": zz}, {"y_sg": y})
        out["loss"].backward()
        assert torch.isfinite(out["loss"]) and torch.isfinite(zz.grad).all(), mode


# ------------------------------------------------------------------ MoCo InfoNCE term


def test_contrastive_term_is_sum_over_experts_of_infonce():
    z, y, counts = _inputs()
    g = torch.Generator().manual_seed(9)
    sims = torch.rand(5, 3, 11, generator=g) * 2 - 1
    base = NCLLoss(counts, n_hcm=4)({"expert_logits": z}, {"y_sg": y})
    out = NCLLoss(counts, n_hcm=4, con_ratio=0.5, temperature=0.2)(
        {"expert_logits": z, "moco_logits": sims}, {"y_sg": y})
    ref = 0.0
    for b in range(5):
        for k in range(3):
            row = sims[b, k] / 0.2
            ref += -(row[0] - math.log(sum(math.exp(v) for v in row.tolist()))) / 5
    assert out["l_con"].item() == pytest.approx(float(ref), rel=1e-5)
    assert out["loss"].item() == pytest.approx(base["loss"].item() + 0.5 * float(ref), rel=1e-5)
    with pytest.raises(ConfigError, match="moco_logits"):
        NCLLoss(counts, n_hcm=4, con_ratio=0.5)({"expert_logits": z}, {"y_sg": y})


# ------------------------------------------------------------------ state, flags, validation


def test_buffers_round_trip_through_state_dict():
    z, y, counts = _inputs()
    a = NCLLoss(counts, n_hcm=4)
    b = NCLLoss(np.ones(20), n_hcm=4)
    assert "log_counts" in a.state_dict()
    b.load_state_dict(a.state_dict())
    batch = {"y_sg": y}
    assert a({"expert_logits": z}, batch)["loss"].item() == b({"expert_logits": z}, batch)["loss"].item()


def test_flags_registry_and_validation():
    p = argparse.ArgumentParser()
    NCLLoss.add_args(p)
    args = p.parse_args([])
    assert (args.ncl_num_experts, args.ncl_hcm_n, args.ncl_alpha, args.ncl_con_ratio) == (3, 0, 0.6, 0.0)
    assert NCLLoss.n_views(args) == 1 and NCLLoss.n_views(p.parse_args(["--ncl_con_ratio", "1"])) == 2
    loss = build_loss("ncl", class_counts=np.ones(230), **ncl_kwargs(args))
    assert isinstance(loss, NCLLoss) and "ncl" in LOSSES and loss.n_hcm == 69   # round(0.3·230)
    assert NCLLoss(np.ones(100)).n_hcm == 30 and NCLLoss.default_model == "ncl"
    loss.on_epoch_start(3)
    for bad in (dict(n_hcm=231), dict(hcm_mode="mean"), dict(alpha=-1.0), dict(temperature=0.0)):
        with pytest.raises(ConfigError):
            NCLLoss(np.ones(230), **bad)
    with pytest.raises(ConfigError, match="expert_logits"):
        loss({"expert_logits": torch.zeros(2, 3, 10)}, {"y_sg": torch.zeros(2, dtype=torch.long)})
