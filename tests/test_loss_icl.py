"""ICLLoss (loss/icl.py) and its CIFAR extras against naive loops written from the formulas of
docs/methods/icl.md."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from loss import LOSSES, build_loss, icl_kwargs
from loss.components import focal_loss
from loss.icl import ICLLoss
from loss.icl_extras import (
    HardNegativeMiner,
    diversity_loss,
    mutual_distillation_loss,
    parallel_circuit_loss,
)
from loss.scl import scl_seed
from utils.crystal import SG_TO_CS
from utils.errors import ConfigError, RuleMatrixError

NC = 230


def _rule(seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(NC, NC, generator=g)
    r = (a + a.t()) / 2
    r.fill_diagonal_(1.0)
    return r


def _counts(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 500, (NC,), generator=g).float()


def _make(b=6, k=8, seed=0, d=16, y=None):
    """Leaf tensors for every model output (so gradients can be inspected) and a batch."""
    g = torch.Generator().manual_seed(seed)
    experts = (3 * torch.randn(b, k, NC, generator=g)).requires_grad_()
    gate = torch.softmax(torch.randn(b, k, generator=g), -1)
    ensemble = (gate[:, :, None] * experts.detach()).sum(1).clone().requires_grad_()
    outputs = {"logits": torch.randn(b, NC, generator=g).requires_grad_(), "ensemble_logits": ensemble,
               "cs_logits": torch.randn(b, 7, generator=g).requires_grad_(), "expert_logits": experts,
               "gate": gate, "features": F.normalize(torch.randn(b, d, generator=g), dim=-1).requires_grad_()}
    if y is None:
        y = torch.tensor([0, 5, 5, 100, 229, 150, 17, 100][:b])
    batch = {"y_sg": y, "y_cs": torch.as_tensor(SG_TO_CS)[y], "idx": torch.arange(b)}
    return outputs, batch


def _logsoftmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def naive_dol(experts, y, tail, gamma):
    b, k, _ = experts.shape
    tot = 0.0
    for i in range(b):
        for j in range(k):
            ce = -_logsoftmax(experts[i, j].tolist())[int(y[i])]
            tot += (1 - math.exp(-ce)) ** gamma * ce if j in tail else ce
    return tot / (b * k)


def naive_col(ensemble, experts):
    b, k, _ = experts.shape
    tot = 0.0
    for i in range(b):
        lp = _logsoftmax(ensemble[i].tolist())
        for j in range(k):
            lq = _logsoftmax(experts[i, j].tolist())
            tot += sum(math.exp(a) * (a - c) for a, c in zip(lp, lq))
    return tot / (b * k)


def naive_ce(logits, y):
    return sum(-_logsoftmax(logits[i].tolist())[int(y[i])] for i in range(len(y))) / len(y)


def naive_sg(ensemble, y):
    """CE restricted to the groups of the true crystal system."""
    tot = 0.0
    for i in range(len(y)):
        keep = [s for s in range(NC) if SG_TO_CS[s] == SG_TO_CS[int(y[i])]]
        row = _logsoftmax([ensemble[i, s].item() for s in keep])
        tot += -row[keep.index(int(y[i]))]
    return tot / len(y)


def _loss(**kw):
    return ICLLoss(_counts(), _rule(), **kw)


# --------------------------------------------------------------------------- components
def test_every_component_matches_naive_and_total_is_the_weighted_sum():
    out, batch = _make()
    loss = _loss(use_contrast=True, focal_gamma=2.0)
    res = loss(out, batch)
    y = batch["y_sg"]
    e, o = out["expert_logits"].detach(), out["ensemble_logits"].detach()
    assert res["l_dol"].item() == pytest.approx(naive_dol(e, y, {4, 5, 6, 7}, 2.0), rel=1e-5)
    assert res["l_col"].item() == pytest.approx(naive_col(o, e), rel=1e-4, abs=1e-6)
    assert res["l_sys"].item() == pytest.approx(naive_ce(out["cs_logits"].detach(), batch["y_cs"]), rel=1e-5)
    assert res["l_sg"].item() == pytest.approx(naive_sg(o, y), rel=1e-5)
    assert res["l_hier"].item() == pytest.approx(res["l_sys"].item() + res["l_sg"].item(), rel=1e-6)
    scl = scl_seed(out["features"].detach(), y, _rule(), 0.07, 0.8)
    assert res["l_scl"].item() == pytest.approx(scl.item(), rel=1e-6)
    want = 0.5 * res["l_dol"] + 0.3 * res["l_col"] + 1.5 * res["l_hier"] + 0.2 * res["l_scl"]
    assert res["loss"].item() == pytest.approx(want.item(), rel=1e-6)
    assert res["loss"].requires_grad
    assert all(not v.requires_grad for key, v in res.items() if key != "loss")


def test_contrast_off_by_default_and_custom_expert_lists():
    out, batch = _make(k=4, seed=1)
    loss = _loss(head_experts=(1, 3), tail_experts=(0, 2), focal_gamma=1.5, lambda_dol=1.0,
                 lambda_col=0.0, lambda_hier=0.0)
    res = loss(out, batch)
    assert res["l_scl"].item() == 0.0
    ref = naive_dol(out["expert_logits"].detach(), batch["y_sg"], {0, 2}, 1.5)
    assert res["l_dol"].item() == pytest.approx(ref, rel=1e-5)
    assert res["loss"].item() == pytest.approx(ref, rel=1e-5)


def test_focal_gamma_zero_is_ce():
    out, batch = _make(seed=2)
    e, y = out["expert_logits"].detach(), batch["y_sg"]
    assert focal_loss(e[:, 0], y, gamma=0.0).item() == pytest.approx(F.cross_entropy(e[:, 0], y).item())
    res = _loss(focal_gamma=0.0)(out, batch)
    assert res["l_dol"].item() == pytest.approx(F.cross_entropy(e.reshape(-1, NC), y.repeat_interleave(8))
                                                .item(), rel=1e-6)
    ref = naive_dol(e[:, :1], y, {0}, 2.0)
    assert focal_loss(e[:, 0], y, gamma=2.0).item() == pytest.approx(ref, rel=1e-5)


def test_identical_experts_uniform_gate_give_zero_col_and_ensemble_equals_expert():
    k, b = 8, 5
    base = torch.randn(b, NC)
    experts = base[:, None, :].repeat(1, k, 1)
    gate = torch.full((b, k), 1.0 / k)
    ensemble = (gate[:, :, None] * experts).sum(1)
    assert torch.allclose(ensemble, base, atol=1e-5)
    out, batch = _make(b=b)
    out.update(expert_logits=experts, ensemble_logits=ensemble, gate=gate)
    assert abs(_loss()(out, batch)["l_col"].item()) < 1e-6


def test_sg_ignores_logits_outside_true_crystal_system():
    out, batch = _make(seed=3)
    loss = _loss()
    a = loss(out, batch)["l_sg"]
    y = batch["y_sg"]
    outside = torch.as_tensor(SG_TO_CS)[None, :] != torch.as_tensor(SG_TO_CS)[y][:, None]
    changed = out["ensemble_logits"].detach().clone()
    changed[outside] = 1000.0 * torch.randn(int(outside.sum()))
    out["ensemble_logits"] = changed
    assert loss(out, batch)["l_sg"].item() == a.item()


def test_disable_col_and_detach_option():
    out, batch = _make(seed=4)
    on, off = _loss()(out, batch), _loss(disable_col=True)(out, batch)
    assert off["l_col"].item() == 0.0
    assert off["loss"].item() == pytest.approx((on["loss"] - 0.3 * on["l_col"]).item(), rel=1e-6)
    # Only L_col active: the ensemble gets a gradient unless it is detached.
    for detach in (False, True):
        out, batch = _make(seed=4)
        _loss(lambda_dol=0, lambda_hier=0, col_detach_ensemble=detach)(out, batch)["loss"].backward()
        g = out["ensemble_logits"].grad
        assert (g is None or g.abs().sum() == 0) == detach
        assert out["expert_logits"].grad.abs().sum() > 0


def test_gradients_reach_the_right_inputs_only():
    out, batch = _make(seed=5)
    _loss(use_contrast=True)(out, batch)["loss"].backward()
    for key in ("expert_logits", "ensemble_logits", "cs_logits", "features"):
        assert out[key].grad is not None and out[key].grad.abs().sum() > 0, key
        assert torch.isfinite(out[key].grad).all()
    assert out["logits"].grad is None  # masked by the PREDICTED system: never trained on


def test_low_precision_inputs_give_float32_finite_loss():
    out, batch = _make(seed=6)
    half = {k: v.detach().to(torch.bfloat16) for k, v in out.items()}
    res = _loss(use_contrast=True, scl_variant="soft")(half, batch)
    assert res["loss"].dtype == torch.float32 and torch.isfinite(res["loss"])


# --------------------------------------------------------------------------- configuration
def test_unknown_scheme_and_bad_configs_raise_config_error():
    with pytest.raises(ConfigError, match="scheme2"):
        _loss(loss_scheme="scheme1")
    with pytest.raises(ConfigError):
        _loss(scl_variant="hard")
    with pytest.raises(ConfigError):
        _loss(head_experts=(0, 1), tail_experts=(1, 2))
    with pytest.raises(ConfigError):
        _loss(retrain_epochs=5)  # epochs missing
    with pytest.raises(RuleMatrixError):
        ICLLoss(_counts(), torch.eye(7))
    with pytest.raises(ConfigError):
        ICLLoss(torch.ones(10), _rule())
    out, batch = _make(k=6)
    with pytest.raises(ConfigError, match="6 experts"):
        _loss()(out, batch)


def test_flags_parse_the_seed_command_and_build_through_the_registry():
    from config.args import get_args_parser

    p = get_args_parser()  # --head_experts/--tail_experts live in its model group (gate prior)
    ICLLoss.add_args(p)
    assert any(g.title == "icl" for g in p._action_groups)
    d = p.parse_args([])
    assert (d.loss_scheme, d.use_contrast_scheme2, d.lambda_dol, d.lambda_hier, d.lambda_scl, d.lambda_col,
            d.disable_col, d.retrain_epochs) == ("scheme2", False, 0.5, 1.5, 0.2, 0.3, False, 0)
    a = p.parse_args("--loss_scheme scheme2 --use_contrast_scheme2 --lambda_dol 0.4 --lambda_hier 1.8 "
                     "--lambda_scl 0.25 --tail_experts 6,7 --head_experts 0,1,2,3,4,5".split())
    kw = icl_kwargs(a)
    assert kw["use_contrast"] and kw["tail_experts"] == (6, 7) and kw["lambda_scl"] == 0.25
    loss = build_loss("icl", class_counts=_counts(), rule_matrix=_rule(), epochs=10, **kw)
    assert isinstance(loss, ICLLoss) and "icl" in LOSSES
    a.head_experts = "0,x"
    with pytest.raises(ConfigError):
        icl_kwargs(a)


def test_buffers_are_in_state_dict():
    loss = _loss()
    loss.on_epoch_start(3)
    sd = loss.state_dict()
    assert {"class_counts", "rule_matrix", "current_epoch"} <= set(sd)
    fresh = _loss()
    fresh.load_state_dict(sd)
    assert int(fresh.current_epoch) == 3


# --------------------------------------------------------------------------- retraining
def test_retrain_switches_at_the_right_epoch_and_uses_balanced_softmax():
    loss = _loss(retrain_epochs=3, epochs=10)
    active = []
    for ep in range(10):
        loss.on_epoch_start(ep)
        active.append(loss.retrain_active)
    assert active == [False] * 7 + [True] * 3
    assert not _loss().retrain_active
    out, batch = _make(seed=7)
    res = loss(out, batch)
    counts = _counts().clamp_min(1)
    shifted = out["expert_logits"].detach() + counts.log()
    assert res["l_dol"].item() == pytest.approx(naive_dol(shifted, batch["y_sg"], set(), 0), rel=1e-5)


# --------------------------------------------------------------------------- extras
def test_parallel_circuit_matches_formula_and_one_expert_is_ce():
    out, batch = _make(seed=8)
    e, y = out["expert_logits"].detach(), batch["y_sg"]
    ce_k = [naive_ce(e[:, k], y) for k in range(8)]
    want = 8 / sum(1 / (c + 1e-8) for c in ce_k)
    assert parallel_circuit_loss(e, y).item() == pytest.approx(want, rel=1e-5)
    assert parallel_circuit_loss(e[:, :1], y).item() == pytest.approx(F.cross_entropy(e[:, 0], y).item(),
                                                                       rel=1e-6)
    # The better expert receives the larger gradient.
    g = out["expert_logits"]
    parallel_circuit_loss(g, y).backward()
    norms = g.grad.norm(dim=(0, 2))
    assert int(norms.argmax()) == int(torch.tensor(ce_k).argmin())


def test_mutual_distillation_matches_double_loop():
    out, _ = _make(b=3, k=3, seed=9)
    e = out["expert_logits"].detach()
    tot = 0.0
    for b in range(3):
        for i in range(3):
            for j in range(3):
                if i != j:
                    lp, lq = _logsoftmax(e[b, j].tolist()), _logsoftmax(e[b, i].tolist())
                    tot += sum(math.exp(a) * (a - c) for a, c in zip(lp, lq))
    assert mutual_distillation_loss(e).item() == pytest.approx(tot / 3, rel=1e-4)
    assert mutual_distillation_loss(e[:, :1]).item() == 0.0


def test_diversity_has_the_intended_sign_and_window():
    out, batch = _make(b=4, k=3, seed=10)
    e = out["expert_logits"]
    z = F.normalize(e.detach(), dim=-1)
    ref = -sum(((z[:, i] - z[:, j]) ** 2).sum(-1).mean() for i in range(3) for j in range(3) if i != j) / 6
    assert diversity_loss(e).item() == pytest.approx(ref.item(), rel=1e-5)
    same = e.detach()[:, :1].repeat(1, 3, 1)
    assert abs(diversity_loss(same).item()) < 1e-6
    # A gradient step on L_div pushes the experts apart.
    x = e.detach().clone().requires_grad_()
    diversity_loss(x).backward()
    assert diversity_loss(x - 50 * x.grad).item() < diversity_loss(x).item()
    loss = _loss(lambda_div=0.1, div_epochs=2, head_experts=(0,), tail_experts=(1, 2))
    for ep, on in ((0, True), (1, True), (2, False)):
        loss.on_epoch_start(ep)
        assert (loss(out, batch)["l_div"].item() != 0) == on


def naive_hnm(f, y, protos, seen, conf, topk, tau):
    tot, n = 0.0, 0
    f = F.normalize(f, dim=-1)
    for i in range(len(y)):
        c = int(y[i])
        if not seen[c]:
            continue
        cands = [j for j in range(len(seen)) if seen[j] and j != c]
        score = {j: conf[c, j].item() + 0.25 * (1 + float(protos[c] @ protos[j])) for j in cands}
        neg = sorted(cands, key=lambda j: -score[j])[:topk]
        logits = [float(f[i] @ protos[j]) / tau for j in [c] + neg]
        tot += -_logsoftmax(logits)[0]
        n += 1
    return tot / n


def test_hard_negative_miner_loss_update_and_state_dict_round_trip():
    torch.manual_seed(0)
    miner = HardNegativeMiner(NC, momentum=0.9, topk=3, temperature=0.07)
    f1, y1 = torch.randn(12, 8), torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5])
    assert miner(f1, y1, y1).item() == 0.0  # no prototypes yet
    protos = F.normalize(torch.stack([F.normalize(f1, dim=-1)[y1 == c].mean(0) for c in range(6)]), dim=-1)
    assert torch.allclose(miner.prototypes[:6], protos, atol=1e-6)
    preds = torch.tensor([1, 1, 2, 3, 4, 5, 2, 1, 2, 3, 4, 0])  # mistakes 0→1, 0→2, 5→0
    f2 = torch.randn(12, 8)
    miner(f2, y1, preds)
    assert miner.confusion[0, 1] == 1 and miner.confusion[0, 2] == 1 and miner.confusion[5, 0] == 1
    mean2 = torch.stack([F.normalize(f2, dim=-1)[y1 == c].mean(0) for c in range(6)])
    assert torch.allclose(miner.prototypes[:6], F.normalize(0.9 * protos + 0.1 * mean2, dim=-1), atol=1e-6)
    f3 = torch.randn(5, 8)
    y3 = torch.tensor([0, 5, 2, 9, 1])  # class 9 unseen: that anchor is skipped
    want = naive_hnm(f3, y3, miner.prototypes, miner.seen, miner.confusion, 3, 0.07)
    with torch.no_grad():  # evaluation: no state change
        before = miner.prototypes.clone()
        assert miner(f3, y3, y3).item() == pytest.approx(want, rel=1e-5)
        assert torch.equal(before, miner.prototypes)
    # Prototypes live in the ICL loss's state_dict and load into a fresh (lazy) instance.
    loss = _loss(lambda_hnm=0.5, hnm_topk=3)
    out, batch = _make(seed=11)
    res = loss(out, batch)
    assert "l_hnm" in res and res["l_hnm"].item() == 0.0 and loss.hnm.prototypes.numel() == 0
    loss.update_memory(out, batch)  # the training loop's job after the step, never the forward's
    assert loss.hnm.prototypes.shape == (NC, 16)
    before = loss.hnm.prototypes.clone()
    res = loss(out, batch)
    assert res["l_hnm"].item() > 0 and torch.equal(before, loss.hnm.prototypes)
    fresh = _loss(lambda_hnm=0.5, hnm_topk=3)
    fresh.load_state_dict(loss.state_dict())
    for name in ("prototypes", "seen", "confusion"):
        assert torch.equal(getattr(fresh.hnm, name), getattr(loss.hnm, name))
    assert "l_hnm" not in _loss()(out, batch)


# --------------------------------------------------------------------------- ablation switches
def _naive_log_prior(counts, groups_of):
    """log π over the groups given by ``groups_of`` (a list: class → group), counts clamped at 1."""
    n_groups = max(groups_of) + 1
    tot = [0.0] * n_groups
    for c, n in enumerate(counts.tolist()):
        tot[groups_of[c]] += n
    tot = [max(t, 1.0) for t in tot]
    return [math.log(t / sum(tot)) for t in tot]


def test_train_mask_none_is_plain_ce_over_all_groups():
    out, batch = _make()
    res = _loss(train_mask_mode="none")(out, batch)
    o = out["ensemble_logits"].detach()
    assert res["l_sg"].item() == pytest.approx(naive_ce(o, batch["y_sg"]), rel=1e-5)


def test_train_mask_soft_is_the_two_level_nll():
    """L_sg = −log p_cs(y_cs) − log softmax-within-system(o)[y], written with loops."""
    out, batch = _make()
    res = _loss(train_mask_mode="soft")(out, batch)
    o, z, y = out["ensemble_logits"].detach(), out["cs_logits"].detach(), batch["y_sg"]
    tot = 0.0
    for i in range(len(y)):
        c = int(SG_TO_CS[int(y[i])])
        keep = [s for s in range(NC) if SG_TO_CS[s] == c]
        within = _logsoftmax([o[i, s].item() for s in keep])[keep.index(int(y[i]))]
        tot += -(_logsoftmax(z[i].tolist())[c] + within)
    assert res["l_sg"].item() == pytest.approx(tot / len(y), rel=1e-5)
    assert res["l_sys"].item() == pytest.approx(naive_ce(z, batch["y_cs"]), rel=1e-5)  # unchanged


def test_cs_logit_adjust_adds_tau_log_prior_of_the_systems():
    out, batch = _make()
    counts = _counts()
    res = ICLLoss(counts, _rule(), cs_logit_adjust=0.7)(out, batch)
    log_pi = _naive_log_prior(counts, [int(c) for c in SG_TO_CS])
    z = out["cs_logits"].detach()
    adj = torch.stack([z[i] + 0.7 * torch.tensor(log_pi) for i in range(len(z))])
    assert res["l_sys"].item() == pytest.approx(naive_ce(adj, batch["y_cs"]), rel=1e-5)
    plain = ICLLoss(counts, _rule())(out, batch)
    assert res["l_sg"].item() == pytest.approx(plain["l_sg"].item(), rel=1e-6)
    assert res["l_sys"].item() != pytest.approx(plain["l_sys"].item(), rel=1e-3)


def test_sg_logit_adjust_with_hard_mask_and_zero_counts():
    out, batch = _make()
    counts = _counts()
    counts[5] = 0  # a group never seen in training: prior clamped at one sample
    res = ICLLoss(counts, _rule(), sg_logit_adjust=1.0)(out, batch)
    log_pi = _naive_log_prior(counts, list(range(NC)))
    o = out["ensemble_logits"].detach() + torch.tensor(log_pi)
    assert res["l_sg"].item() == pytest.approx(naive_sg(o, batch["y_sg"]), rel=1e-5)


def test_tail_logit_adjust_replaces_focal_loss_of_the_tail_experts_only():
    """L_dol = mean over (sample, expert) of CE for head experts and CE(o_k + τ_t·log π) for tail
    experts, written with loops; head experts' terms and L_sg are untouched."""
    out, batch = _make()
    counts = _counts()
    counts[7] = 0  # clamped at one sample
    res = ICLLoss(counts, _rule(), tail_logit_adjust=2.0, head_experts=(0, 2, 4, 6),
                  tail_experts=(1, 3, 5, 7))(out, batch)
    log_pi = _naive_log_prior(counts, list(range(NC)))
    e, y = out["expert_logits"].detach(), batch["y_sg"]
    tot = 0.0
    for i in range(len(y)):
        for k in range(e.shape[1]):
            row = e[i, k].tolist()
            if k % 2 == 1:
                row = [v + 2.0 * lp for v, lp in zip(row, log_pi)]
            tot += -_logsoftmax(row)[int(y[i])]
    assert res["l_dol"].item() == pytest.approx(tot / (len(y) * e.shape[1]), rel=1e-5)
    plain = ICLLoss(counts, _rule())(out, batch)
    assert res["l_sg"].item() == pytest.approx(plain["l_sg"].item(), rel=1e-6)
    assert res["l_dol"].item() != pytest.approx(plain["l_dol"].item(), rel=1e-3)
    with pytest.raises(ConfigError, match="tail_logit_adjust"):
        ICLLoss(counts, _rule(), tail_logit_adjust=-1.0)


def test_dol_logit_adjust_balances_every_expert_term():
    """τ_d: head experts' CE and tail experts' focal loss both on o_k + τ_d·log π (loops, by hand);
    with τ_t > 0 as well the tail experts take CE(o_k + τ_t·log π) instead."""
    import math

    out, batch = _make()
    counts = _counts()
    counts[3] = 0  # clamped at one sample
    log_pi = _naive_log_prior(counts, list(range(NC)))
    e, y = out["expert_logits"].detach(), batch["y_sg"]

    def naive(tau_d: float, tau_t: float) -> float:
        tot = 0.0
        for i in range(len(y)):
            for k in range(e.shape[1]):
                tail = k >= 4
                tau = tau_t if (tail and tau_t > 0) else tau_d
                row = [v + tau * lp for v, lp in zip(e[i, k].tolist(), log_pi)]
                ce = -_logsoftmax(row)[int(y[i])]
                if tail and tau_t == 0:
                    ce = (1.0 - math.exp(-ce)) ** 2.0 * ce  # focal, γ = 2
                tot += ce
        return tot / (len(y) * e.shape[1])

    res = ICLLoss(counts, _rule(), dol_logit_adjust=1.0)(out, batch)
    assert res["l_dol"].item() == pytest.approx(naive(1.0, 0.0), rel=1e-5)
    both = ICLLoss(counts, _rule(), dol_logit_adjust=0.5, tail_logit_adjust=2.0)(out, batch)
    assert both["l_dol"].item() == pytest.approx(naive(0.5, 2.0), rel=1e-5)
    plain = ICLLoss(counts, _rule())(out, batch)
    assert plain["l_dol"].item() == pytest.approx(naive(0.0, 0.0), rel=1e-5)
    assert res["l_dol"].item() != pytest.approx(plain["l_dol"].item(), rel=1e-3)
    assert res["l_sg"].item() == pytest.approx(plain["l_sg"].item(), rel=1e-6)
    with pytest.raises(ConfigError, match="dol_logit_adjust"):
        ICLLoss(counts, _rule(), dol_logit_adjust=-0.5)


def test_train_mask_mode_flag_and_bad_value():
    from config.args import get_args_parser

    p = get_args_parser()
    ICLLoss.add_args(p)
    assert p.parse_args([]).train_mask_mode == "hard"  # the method as published by default
    args = p.parse_args(["--train_mask_mode", "soft", "--cs_logit_adjust", "1", "--sg_logit_adjust", "0.5",
                         "--tail_logit_adjust", "2", "--dol_logit_adjust", "1"])
    kw = icl_kwargs(args)
    assert (kw["train_mask_mode"], kw["cs_logit_adjust"], kw["sg_logit_adjust"]) == ("soft", 1.0, 0.5)
    assert kw["tail_logit_adjust"] == 2.0 and p.parse_args([]).tail_logit_adjust == 0.0
    assert kw["dol_logit_adjust"] == 1.0 and p.parse_args([]).dol_logit_adjust == 0.0
    with pytest.raises(ConfigError, match="train_mask_mode"):
        _loss(train_mask_mode="sometimes")
