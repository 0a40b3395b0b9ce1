"""Models: every MODELS × FRONTENDS pair (shapes, finiteness, gradients, rebuild from config, batch
size 1), and the ICL head against naive per-expert references written here."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import FRONTENDS, MODELS, create_frontend, create_model, gate_prior
from models.layers import conv_same
from models.moe import MASK_PENALTY, hard_mask, soft_mask
from utils.crystal import N_CS, N_SG, SG_TO_CS, cs_sg_mask
from utils.errors import ConfigError, DataError

L = 1024
B = 6
# Small settings per frontend so the registry-wide tests stay fast; a frontend missing here is
# tested with its defaults.
SMALL = {
    "restcn": {"width_mult": 0.125},
    "restcn_lite": {"width_mult": 0.125},
    "vit": {"seq_len": L, "patch_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 4, "out_dim": 64,
            "use_cls_token": True},
}
PAIRS = [(m, f) for m in MODELS.names() for f in FRONTENDS.names()]


def _model(name, frontend="restcn", **kw):
    torch.manual_seed(0)
    return create_model(name, frontend=frontend, frontend_kwargs=SMALL.get(frontend, {}), **kw)


def _x(batch=B, length=L, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 1, length, generator=g) * 100


def _use_all(out, y):
    """A loss touching every output (random projections + CE), so every parameter gets gradient."""
    g = torch.Generator().manual_seed(2)
    loss = F.cross_entropy(out.get("ensemble_logits", out["logits"]), y)
    for v in out.values():
        loss = loss + (v.float() * torch.randn(v.shape, generator=g)).sum() * 1e-2
    return loss


@pytest.mark.parametrize("name,frontend", PAIRS)
def test_outputs_shapes_finite_and_every_parameter_gets_gradient(name, frontend):
    model = _model(name, frontend)
    model.train()
    out = model(_x())
    assert out["logits"].shape == (B, N_SG)
    for k, v in out.items():
        assert torch.isfinite(v).all(), k
    h_dim = model.frontend.out_dim
    assert out["features"].shape == (B, h_dim)
    torch.testing.assert_close(out["features"].norm(dim=-1), torch.ones(B))
    if "expert_logits" in out:
        assert out["expert_logits"].shape == (B, model.num_experts, N_SG)
    if "gate" in out:  # the ICL MoE's gate and crystal-system branch
        assert out["gate"].shape == (B, model.num_experts)
        assert out["cs_logits"].shape == (B, N_CS)
        assert out["proj"].shape == (B, 256)
    _use_all(out, torch.randint(0, N_SG, (B,))).backward()
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} has an all-zero gradient"


@pytest.mark.parametrize("name,frontend", PAIRS)
def test_rebuild_from_config_and_state_dict_gives_identical_outputs(name, frontend):
    kw = {"class_counts": np.arange(N_SG) % 50} if name == "icl_moe" else {}
    model = _model(name, frontend, **kw)
    model.train()
    model(_x(seed=5))                    # move BatchNorm running statistics off their init
    model.eval()
    x = _x()
    with torch.no_grad():
        ref = model(x)
    config = json.loads(json.dumps(model.config))     # must survive JSON
    torch.manual_seed(123)                            # a different init, overwritten by the state
    clone = create_model(**config)
    clone.load_state_dict(model.state_dict())
    clone.eval()
    with torch.no_grad():
        out = clone(x)
    assert out.keys() == ref.keys()
    for k in ref:
        assert torch.equal(out[k], ref[k]), k


@pytest.mark.parametrize("name,frontend", PAIRS)
def test_eval_batch_size_one_matches_batched_rows(name, frontend):
    model = _model(name, frontend).eval()
    x = _x()
    with torch.no_grad():
        full = model(x)
        one = model(x[1:2])
    for k in full:
        assert one[k].shape[0] == 1
        # float32 kernels pick batch-size-dependent algorithms (oneDNN): a deep frontend (ResNet-18)
        # accumulates differences of a few 1e-4 on logits of order 1 — far below any row mix-up.
        torch.testing.assert_close(one[k], full[k][1:2], atol=1e-3, rtol=1e-3)


# ------------------------------------------------------------------ ICL head

ICL_VARIANTS = [dict(expert_mode=e, mask_mode=m) for e in ("lightweight", "original")
                for m in ("hard", "soft", "none")]


@pytest.mark.parametrize("kw", ICL_VARIANTS, ids=lambda d: f"{d['expert_mode']}-{d['mask_mode']}")
def test_icl_modes_gate_and_ensemble(kw):
    model = _model("icl_moe", num_experts=4, learn_gate_prior=True,
                   class_counts=np.arange(N_SG) % 40, **kw)
    model.train()
    out = model(_x())
    gate = out["gate"]
    assert (gate >= 0).all()
    torch.testing.assert_close(gate.sum(-1), torch.ones(B))
    ens = torch.einsum("bk,bkc->bc", gate, out["expert_logits"])
    torch.testing.assert_close(out["ensemble_logits"], ens)
    assert out["expert_logits"].abs().max() <= 30.0 + 1e-4       # cosine logits within ±s
    _use_all(out, torch.randint(0, N_SG, (B,))).backward()
    assert model.gate.prior.grad is not None and model.gate.prior.grad.abs().sum() > 0


def test_hard_mask_never_predicts_outside_the_predicted_system():
    allowed = cs_sg_mask()
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(70, N_SG, generator=g) * 30
    cs_pred = torch.arange(70) % N_CS
    masked = hard_mask(logits, cs_pred, allowed)
    sg_cs = torch.as_tensor(SG_TO_CS)
    assert (sg_cs[masked.argmax(-1)] == cs_pred).all()
    # top-k over more groups than the system has (triclinic: 2) ranks the system first, then the rest
    top5 = masked.topk(5, dim=-1).indices
    tri = cs_pred == 0
    assert (top5[tri, :2].sort(-1).values == torch.tensor([0, 1])).all()
    inside = allowed[cs_pred]
    torch.testing.assert_close(masked[inside], logits[inside])
    torch.testing.assert_close(masked[~inside], logits[~inside] - MASK_PENALTY)
    assert torch.isfinite(F.log_softmax(masked, -1)).all()

    model = _model("icl_moe", mask_mode="hard").eval()
    with torch.no_grad():
        out = model(_x(batch=16))
    assert (sg_cs[out["logits"].argmax(-1)] == out["cs_logits"].argmax(-1)).all()


def test_bf16_autocast_keeps_gate_and_masking_exact():
    model = _model("icl_moe").eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(_x(batch=16))
    assert out["logits"].dtype == out["ensemble_logits"].dtype == out["gate"].dtype == torch.float32
    torch.testing.assert_close(out["gate"].sum(-1), torch.ones(16))
    sg_cs = torch.as_tensor(SG_TO_CS)
    assert (sg_cs[out["logits"].argmax(-1)] == out["cs_logits"].argmax(-1)).all()


def test_soft_mask_is_a_normalised_two_level_distribution():
    g = torch.Generator().manual_seed(0)
    logits, cs_logits = torch.randn(5, N_SG, generator=g) * 30, torch.randn(5, N_CS, generator=g) * 5
    out = soft_mask(logits, cs_logits)
    torch.testing.assert_close(out.logsumexp(-1), torch.zeros(5), atol=1e-5, rtol=0)
    p = out.exp()
    for c in range(N_CS):
        members = torch.as_tensor(SG_TO_CS == c)
        torch.testing.assert_close(p[:, members].sum(-1), cs_logits.softmax(-1)[:, c])
        torch.testing.assert_close(p[:, members] / p[:, members].sum(-1, keepdim=True),
                                   logits[:, members].softmax(-1))
    model = _model("icl_moe", mask_mode="soft").eval()
    with torch.no_grad():
        torch.testing.assert_close(model(_x())["logits"].logsumexp(-1), torch.zeros(B), atol=1e-4, rtol=0)


def _naive_lightweight(model, fmap):
    v = model.proj(model.experts.layer3(fmap).mean(-1))
    w = model.experts.weight
    return torch.stack([30.0 * F.normalize(v, dim=-1) @ F.normalize(w[k], dim=0)
                        for k in range(w.shape[0])], dim=1)


def _naive_original(model, fmap):
    """K separate experts with plain F.conv1d / F.batch_norm on weights sliced out of the grouped
    block (expert k owns output channels [k·C, (k+1)·C))."""
    ex, c = model.experts, fmap.shape[1]
    g = ex.layer3
    outs = []
    for k in range(model.num_experts):
        sl = slice(k * c, (k + 1) * c)

        def bn(x, m, sl=sl):
            return F.batch_norm(x, m.running_mean[sl].clone(), m.running_var[sl].clone(), m.weight[sl],
                                m.bias[sl], training=g.training, eps=m.eps)

        y = F.leaky_relu(bn(F.conv1d(fmap, g.conv1.weight[sl], padding=1), g.bn1))
        y = bn(F.conv1d(y, g.conv2.weight[sl], padding=1), g.bn2)
        z = F.leaky_relu(y + fmap).mean(-1)
        e = z @ ex.fc_weight[k] + ex.fc_bias[k]
        outs.append(30.0 * F.normalize(e, dim=-1) @ F.normalize(ex.weight[k], dim=0))
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize("groups", [1, 4])
@pytest.mark.parametrize("kernel", [1, 3, 5])
def test_length_one_fast_path_equals_the_convolution(groups, kernel):
    conv = torch.nn.Conv1d(8, 16, kernel, padding=kernel // 2, groups=groups, bias=True)
    x = torch.randn(5, 8, 1, requires_grad=True)
    ref = conv(x)
    gx_ref, gw_ref, gb_ref = torch.autograd.grad((ref ** 2).sum(), (x, conv.weight, conv.bias))
    out = conv_same(conv, x)
    gx, gw, gb = torch.autograd.grad((out ** 2).sum(), (x, conv.weight, conv.bias))
    torch.testing.assert_close(out, ref)
    for a, b in ((gx, gx_ref), (gw, gw_ref), (gb, gb_ref)):
        torch.testing.assert_close(a, b)
    assert (gw[:, :, [t for t in range(kernel) if t != kernel // 2]] == 0).all()
    x3 = torch.randn(5, 8, 7)
    torch.testing.assert_close(conv_same(conv, x3), conv(x3))


@pytest.mark.parametrize("mode", ["lightweight", "original"])
@pytest.mark.parametrize("train", [False, True])
def test_batched_experts_equal_a_naive_loop(mode, train):
    # float64: train-mode BatchNorm over a (B, C, 1) map amplifies float32 rounding to ~1e-3
    model = _model("icl_moe", expert_mode=mode).double()
    model.train()
    model(_x(seed=7).double())                           # non-trivial BN running stats
    model.eval()
    x = _x().double()
    with torch.no_grad():
        fmap = model.frontend.forward_features(x)
        model.experts.train(train)
        batched = model.experts(fmap, model.proj)
        naive = (_naive_lightweight if mode == "lightweight" else _naive_original)(model, fmap)
    torch.testing.assert_close(batched, naive, atol=1e-9, rtol=1e-9)
    if not train:
        with torch.no_grad():
            torch.testing.assert_close(model(x)["expert_logits"], naive, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("mode", ["lightweight", "original"])
def test_layer3_kernel_one_is_the_same_function_on_length_one_maps(mode):
    k3 = _model("icl_moe", expert_mode=mode).eval()
    k1 = _model("icl_moe", expert_mode=mode, layer3_kernel_size=1).eval()
    state = {n: (t[:, :, 1:2] if n.startswith("experts.layer3.conv") else t)
             for n, t in k3.state_dict().items()}
    k1.load_state_dict(state)
    x = _x()
    with torch.no_grad():
        assert k3.frontend.forward_features(x).shape[-1] == 1
        torch.testing.assert_close(k1(x)["logits"], k3(x)["logits"])


# ------------------------------------------------------------------ gate prior

def test_gate_prior_hand_computed():
    counts = np.full(N_SG, 50.0)
    counts[[0, 1]] = [100, 5]                 # triclinic: 5 of 105 samples in a tail class
    counts[2:15] = 0                          # monoclinic: no samples at all
    counts[200] = 3                           # cubic: one tail class among 36
    lin = gate_prior(counts, mode="linear", strength=2.0)
    torch.testing.assert_close(lin[0], torch.tensor([2 * 100 / 105] * 4 + [2 * 5 / 105] * 4))
    assert (lin[1] == 0).all()                # empty system: no preference
    torch.testing.assert_close(lin[2], torch.tensor([2.0] * 4 + [0.0] * 4))

    lo = gate_prior(counts, strength=1.0)
    n_all, t_all = counts.sum(), 5 + 3
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    f_all = (t_all + 0.5) / (n_all + 1)
    z0 = logit(5.5 / 106) - logit(f_all)
    torch.testing.assert_close(lo[0], torch.tensor([-z0 / 2] * 4 + [z0 / 2] * 4))
    z2 = logit(0.5 / (59 * 50 + 1)) - logit(f_all)
    assert z2 < 0 and lo[2, 0] > 0            # tail-free orthorhombic leans to the head experts
    assert (lo[1] == 0).all()

    # with G(u) = 0 and a certain crystal system, the tail:head routing odds equal exp(z_c)
    model = _model("icl_moe", class_counts=counts)
    cs = torch.full((1, N_CS), -1e4)
    cs[0, 0] = 1e4
    with torch.no_grad():
        g = model.gate(torch.randn(1, 256), cs)[0]
    assert math.isclose(float(g[4:].sum() / g[:4].sum()), math.exp(z0), rel_tol=1e-4)


def test_gate_prior_validation():
    with pytest.raises(DataError, match="230"):
        gate_prior(np.ones(10))
    with pytest.raises(ConfigError, match="disjoint"):
        gate_prior(np.ones(N_SG), head_experts=(0, 1), tail_experts=(1, 2))
    with pytest.raises(ConfigError, match="mode"):
        gate_prior(np.ones(N_SG), mode="bogus")


# ------------------------------------------------------------------ frontends and factory

@pytest.mark.parametrize("width", [0.125, 0.5])
def test_restcn_reaches_length_one_at_8500_and_accepts_any_length(width):
    fe = create_frontend("restcn", width_mult=width).eval()
    assert fe.out_dim == round(1024 * width)
    with torch.no_grad():
        assert fe.forward_features(torch.rand(2, 1, 8500)).shape == (2, fe.out_dim, 1)
        if width == 0.125:
            for length in (37, 100, 20000):
                fmap = fe.forward_features(torch.rand(2, 1, length))
                assert fmap.shape[:2] == (2, fe.out_dim)
                assert fe(torch.rand(2, 1, length)).shape == (2, fe.out_dim)
            assert fe.forward_features(torch.rand(1, 1, 20000)).shape[-1] == 2   # pooled by .pool


def test_vit_pads_to_the_patch_size_and_interpolates_positions():
    kw = dict(SMALL["vit"], input_norm=False, use_cls_token=False)
    fe = create_frontend("vit", **kw).eval()
    x = torch.rand(2, 1, 1000)
    with torch.no_grad():
        torch.testing.assert_close(fe(x), fe(F.pad(x, (0, 24))))          # zero padding to 1024
        assert fe(torch.rand(2, 1, 2048)).shape == (2, 64)                 # 64 patches, pos. interpolated
        assert fe.forward_features(x).shape == (2, 64, 1)


def test_factory_errors():
    with pytest.raises(KeyError, match="icl_moe"):
        create_model("nope")
    with pytest.raises(KeyError, match="restcn"):
        create_model("linear", frontend="nope")
    with pytest.raises(ConfigError, match="unknown arguments"):
        create_model("icl_moe", bogus=1)
    with pytest.raises(ConfigError, match="unknown arguments"):
        create_model("linear", frontend_kwargs={"depth": 3})
    with pytest.raises(ConfigError, match="mask_mode"):
        create_model("icl_moe", mask_mode="maybe")
    with pytest.raises(ConfigError, match="230"):
        create_model("icl_moe", num_classes=10)
    with pytest.raises(ConfigError, match="disjoint"):
        create_model("icl_moe", num_experts=4, tail_experts=(3, 4))
    with pytest.raises(ConfigError, match="one of them"):
        create_model("icl_moe", class_counts=np.ones(N_SG), gate_prior=torch.zeros(7, 8))
    with pytest.raises(ConfigError, match="num_heads"):
        create_frontend("vit", embed_dim=30, num_heads=8)
    with pytest.raises(DataError, match="input must be"):
        _model("linear")(torch.rand(2, 1, 1, 64))
    seven = create_model("linear", num_classes=7, frontend_kwargs=SMALL["restcn"])
    assert seven(_x())["logits"].shape == (B, 7)


def test_gate_prior_strength_zero_switches_the_rule_prior_off():
    counts = np.where(np.arange(N_SG) % 3 == 0, 500, 3)   # systems differ in their tail fraction
    on = _model("icl_moe", class_counts=counts)
    off = _model("icl_moe", class_counts=counts, gate_prior_strength=0.0)
    assert on.gate.prior.abs().max() > 0.1
    assert off.gate.prior.abs().max() == 0
    assert off.config["gate_prior_strength"] == 0.0
    # the rebuilt model (checkpoint path: config + state_dict) keeps the prior switched off
    again = create_model(**off.config)
    again.load_state_dict(off.state_dict())
    assert again.gate.prior.abs().max() == 0


def test_cs_posthoc_adjust_shifts_the_system_logits_by_the_hand_computed_prior_ratio():
    """shift_c = −τ·(log π_c − log ν_c): π the training counts per system, ν = groups per system / 230."""
    model = _model("icl_moe").eval()
    x = _x()
    with torch.no_grad():
        before = model(x)
    counts = np.ones(N_SG)
    counts[np.asarray(SG_TO_CS) == 1] = 10.0  # monoclinic groups 10x as frequent
    shift = model.set_cs_posthoc_adjust(counts, 0.5)
    n = np.bincount(np.asarray(SG_TO_CS), minlength=7).astype(float)   # groups per system (2, 13, 59, ...)
    pi = n * np.where(np.arange(7) == 1, 10.0, 1.0)
    want = -0.5 * (np.log(pi / pi.sum()) - np.log(n / N_SG))
    np.testing.assert_allclose(shift.numpy(), want, rtol=1e-5)
    assert want[1] < 0 and np.all(want[np.arange(7) != 1] > 0)
    with torch.no_grad():
        after = model(x)
    torch.testing.assert_close(after["cs_logits"], before["cs_logits"] + shift.float())
    allowed = model.cs_sg_mask[after["cs_logits"].argmax(-1)]  # the hard mask follows the shift
    assert torch.equal(after["logits"] > -MASK_PENALTY / 2, allowed)
    model.set_cs_posthoc_adjust(counts, 0.0)  # off again: exactly the original outputs
    with torch.no_grad():
        torch.testing.assert_close(model(x)["logits"], before["logits"], rtol=0, atol=0)
    assert "cs_logit_shift" not in model.state_dict()
    with pytest.raises(ConfigError, match="τ"):
        model.set_cs_posthoc_adjust(counts, -1.0)
