"""GLMC (loss/glmc.py, models/glmc.py, Trainer/glmc.py, the views and re-weighted loader) against
naive implementations written here from docs/methods/glmc.md and the oracles of
docs/methods/conventions.md §7."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import builders
import train
from datasets.readers.npy_format import split_path, write_dataset_json, write_npy
from datasets.readers.peak_lists import build_peaks_bundle
from datasets.views import DrawTaggedDataset, DrawTaggedSampler, TensorViewCollate, with_views
from loss import LOSSES, GLMCLoss, glmc_kwargs, loss_kwargs
from loss.glmc import cumulative_alpha, glmc_class_weights, mixed_soft_ce, mixture_consistency
from models import create_model
from Trainer import TRAINERS, GLMCTrainer, LRSchedule
from Trainer.glmc import cutmix, cutmix_segment, mixup
from utils.errors import ConfigError
from utils.grid import GridSpec

C = 230


# ------------------------------------------------------------------ naive references (spec §1)
def naive_soft_ce(logits, t):
    """−mean_i Σ_c t_ic log softmax(o_i)_c with python loops."""
    tot = 0.0
    for row, trow in zip(logits.tolist(), t.tolist()):
        m = max(row)
        lse = m + math.log(sum(math.exp(v - m) for v in row))
        tot += -sum(tc * (v - lse) for v, tc in zip(row, trow))
    return tot / len(logits)


def naive_targets(y_a, y_b, lam, w=None):
    """t = λ e(y^a) + (1−λ) e(y^b), t^w = λ w⊙e(y^a) + (1−λ) w⊙e(y^b) as dense (B, C)."""
    b = len(y_a)
    t = torch.zeros(b, C, dtype=torch.float64)
    for i in range(b):
        wa = 1.0 if w is None else float(w[y_a[i]])
        wb = 1.0 if w is None else float(w[y_b[i]])
        t[i, y_a[i]] += lam * wa
        t[i, y_b[i]] += (1 - lam) * wb
    return t


def naive_cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def naive_weights(counts, gamma):
    n = [float(c) for c in counts]
    s = sum(c ** -gamma for c in n)
    return [len(n) * c ** -gamma / s for c in n]


def _outputs(seed, b=6, d=16):
    g = torch.Generator().manual_seed(seed)

    def one():
        return {k: (s * torch.randn(*shape, generator=g)).requires_grad_()
                for k, shape, s in (("logits_fc", (b, C), 2.0), ("logits", (b, C), 2.0),
                                    ("proj", (b, d), 1.0), ("pred", (b, d), 1.0))}

    y_a, y_b = torch.randint(0, C, (b,), generator=g), torch.randint(0, C, (b,), generator=g)
    return {"global": one(), "local": one()}, y_a, y_b


def _batch(y_a, y_b, lam_g, lam_l=None):
    return {"y_sg": y_a, "y_mix": y_b, "lam_global": torch.tensor(lam_g),
            "lam_local": torch.tensor(lam_g if lam_l is None else lam_l)}


# ------------------------------------------------------------------ formulas
def test_cumulative_schedule_oracles():
    for e_tot in (1, 7, 200):
        assert cumulative_alpha(0, e_tot) == 1.0
        assert cumulative_alpha(e_tot - 1, e_tot) == pytest.approx(1 - ((e_tot - 1) / e_tot) ** 2)
    assert cumulative_alpha(100, 200) == pytest.approx(0.75)
    assert cumulative_alpha(199, 200) == pytest.approx(0.009975)
    loss = GLMCLoss(np.ones(C), epochs=200)
    assert float(loss.alpha) == 1.0
    loss.on_epoch_start(100)
    assert float(loss.alpha) == pytest.approx(0.75)


def test_class_weights_hand_values_uniform_and_empty_classes():
    w = glmc_class_weights([100, 10, 1], 1.2)
    torch.testing.assert_close(w, torch.tensor([0.011192, 0.177389, 2.811419]), atol=2e-6, rtol=0)
    assert float(w.sum()) == pytest.approx(3.0)
    torch.testing.assert_close(w, torch.tensor(naive_weights([100, 10, 1], 1.2), dtype=torch.float32))
    torch.testing.assert_close(glmc_class_weights(np.full(C, 17), 1.2), torch.ones(C))
    # empty classes: weight 0, present classes normalised among themselves (mean 1)
    w0 = glmc_class_weights([100, 0, 10, 0, 1], 1.2)
    assert w0[1] == 0 and w0[3] == 0
    torch.testing.assert_close(w0[[0, 2, 4]], w)
    with pytest.raises(ConfigError):
        glmc_class_weights(np.zeros(5), 1.0)


def test_hand_example_soft_ce():
    o = torch.tensor([[2.0, 0.0, -1.0]])
    torch.testing.assert_close(torch.log_softmax(o, -1), torch.tensor([[-0.169846, -2.169846, -3.169846]]))
    ya, yb = torch.tensor([0]), torch.tensor([2])
    assert float(mixed_soft_ce(o, ya, yb, 0.7)) == pytest.approx(1.069846, abs=1e-5)
    w = glmc_class_weights([100, 10, 1], 1.2)
    assert float(mixed_soft_ce(o, ya, yb, 0.7, w)) == pytest.approx(2.674860, abs=1e-5)


@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0])
def test_mixed_soft_ce_matches_dense_targets(lam):
    out, ya, yb = _outputs(1)
    counts = np.random.default_rng(0).integers(1, 500, C)
    w = glmc_class_weights(counts, 1.2)
    o = out["global"]["logits"].detach()
    assert float(mixed_soft_ce(o, ya, yb, lam)) == pytest.approx(naive_soft_ce(o, naive_targets(ya, yb, lam)),
                                                                 rel=1e-5)
    assert float(mixed_soft_ce(o, ya, yb, lam, w)) == pytest.approx(
        naive_soft_ce(o, naive_targets(ya, yb, lam, w)), rel=1e-5)


@pytest.mark.parametrize("epoch,area", [(0, False), (3, False), (6, True)])
def test_full_loss_matches_naive(epoch, area):
    out, ya, yb = _outputs(2)
    counts = np.random.default_rng(1).integers(1, 300, C)
    loss = GLMCLoss(counts, epochs=7, label_weight_gamma=1.1, contrast_weight=2.5,
                    area_corrected_lambda=area)
    loss.on_epoch_start(epoch)
    lam_g, lam_l = 0.62, (0.55 if area else 0.62)
    res = loss(out, _batch(ya, yb, lam_g, lam_l))
    w = naive_weights(counts, 1.1)
    det = {s: {k: v.detach() for k, v in o.items()} for s, o in out.items()}
    l_bal = (naive_soft_ce(det["global"]["logits_fc"], naive_targets(ya, yb, lam_g))
             + naive_soft_ce(det["local"]["logits_fc"], naive_targets(ya, yb, lam_l)))
    l_rb = (naive_soft_ce(det["global"]["logits"], naive_targets(ya, yb, lam_g, w))
            + naive_soft_ce(det["local"]["logits"], naive_targets(ya, yb, lam_l, w)))
    b = len(ya)
    l_mc = -sum(naive_cos(det["global"]["pred"][i].tolist(), det["local"]["proj"][i].tolist())
                for i in range(b)) / b \
        - sum(naive_cos(det["local"]["pred"][i].tolist(), det["global"]["proj"][i].tolist())
              for i in range(b)) / b
    alpha = 1 - (epoch / 7) ** 2
    assert float(res["l_bal"]) == pytest.approx(l_bal, rel=1e-5)
    assert float(res["l_rb"]) == pytest.approx(l_rb, rel=1e-5)
    assert float(res["l_mc"]) == pytest.approx(l_mc, rel=1e-5, abs=1e-6)
    assert float(res["alpha"]) == pytest.approx(alpha)
    total = alpha * l_bal + (1 - alpha) * l_rb + 2.5 * l_mc
    assert float(res["loss"].detach()) == pytest.approx(total, rel=1e-5)
    for k in ("l_bal", "l_rb", "l_mc", "alpha"):
        assert not res[k].requires_grad
    res["loss"].backward()
    for s in ("global", "local"):
        for k in ("logits_fc", "pred") + (("logits",) if epoch > 0 else ()):
            assert out[s][k].grad is not None and out[s][k].grad.abs().sum() > 0, (s, k)
        if epoch == 0:                       # α_0 = 1: the re-balanced head is not trained yet
            assert out[s]["logits"].grad.abs().sum() == 0
        assert out[s]["proj"].grad is None   # z only enters through sg(z)


def test_uniform_counts_give_unit_weights_and_l_rb_equals_l_bal():
    out, ya, yb = _outputs(3)
    for s in out.values():
        s["logits"] = s["logits_fc"]          # same logits in both heads
    loss = GLMCLoss(np.full(C, 9), epochs=5)
    torch.testing.assert_close(loss.class_weights, torch.ones(C))
    res = loss(out, _batch(ya, yb, 0.4))
    assert float(res["l_rb"]) == pytest.approx(float(res["l_bal"]), rel=1e-6)


def test_mixture_consistency_identical_unit_vectors_is_minus_two_and_grad_reaches_p_only():
    g = torch.Generator().manual_seed(4)
    v = torch.nn.functional.normalize(torch.randn(5, 16, generator=g), dim=-1)
    p_g, p_l = v.clone().requires_grad_(), v.clone().requires_grad_()
    z_g, z_l = v.clone().requires_grad_(), v.clone().requires_grad_()
    l_mc = mixture_consistency(p_g, z_g, p_l, z_l)
    assert float(l_mc.detach()) == pytest.approx(-2.0, abs=1e-6)
    (l_mc + (p_g.sum() + p_l.sum()) * 0).backward()
    assert p_g.grad is not None and p_l.grad is not None
    assert z_g.grad is None and z_l.grad is None
    # any nonzero scale: still −2 (cosine)
    assert float(mixture_consistency(3 * v, 0.5 * v, 2 * v, v)) == pytest.approx(-2.0, abs=1e-6)


def test_state_dict_round_trip_and_bad_arguments():
    a = GLMCLoss(np.arange(1, C + 1), epochs=10, label_weight_gamma=1.0)
    a.on_epoch_start(4)
    b = GLMCLoss(np.ones(C), epochs=10)
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b.class_weights, a.class_weights)
    assert float(b.alpha) == pytest.approx(1 - 0.16)
    for kw in ({"epochs": 0}, {"mix_alpha": 0.0}, {"contrast_weight": -1.0}):
        with pytest.raises(ConfigError):
            GLMCLoss(np.ones(C), **{"epochs": 3, **kw})


def test_flags_and_declarations():
    p = argparse.ArgumentParser()
    GLMCLoss.add_args(p)
    args = p.parse_args(["--contrast_weight", "0.5", "--area_corrected_lambda"])
    args.epochs = 3
    assert args.resample_q == 0.0 and args.label_weight_gamma == 1.2 and args.mix_alpha == 1.0
    assert glmc_kwargs(args) == {"label_weight_gamma": 1.2, "contrast_weight": 0.5, "mix_alpha": 1.0,
                                 "area_corrected_lambda": True}
    kw = loss_kwargs("glmc", args, np.ones(C), None)
    assert kw["epochs"] == 3 and "rule_matrix" not in kw
    cls = LOSSES.get("glmc")
    assert cls.default_model == "glmc" and TRAINERS.get(cls.trainer) is GLMCTrainer
    assert cls.n_views == 2 and cls.extra_loaders == {"train_rb": "resample_q"}


# ------------------------------------------------------------------ mixes
def test_lambda_one_returns_the_uniform_batch():
    g = torch.Generator().manual_seed(5)
    xa, xb = torch.randn(4, 1, 50, generator=g), torch.randn(4, 1, 50, generator=g)
    assert torch.equal(mixup(xa, xb, 1.0), xa)
    out, lam_area = cutmix(xa, xb, 1.0)
    assert torch.equal(out, xa) and lam_area == 1.0
    img_a, img_b = torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 8, 8, generator=g)
    out, lam_area = cutmix(img_a, img_b, 1.0)
    assert torch.equal(out, img_a) and lam_area == 1.0
    # ... and the targets are e(y^a): the loss is CE on y^a
    o = torch.randn(4, C, generator=g)
    ya, yb = torch.randint(0, C, (4,), generator=g), torch.randint(0, C, (4,), generator=g)
    assert float(mixed_soft_ce(o, ya, yb, 1.0)) == pytest.approx(
        float(torch.nn.functional.cross_entropy(o, ya)), rel=1e-6)


def test_cutmix_segment_length_centre_and_clipping():
    assert cutmix_segment(100, 0.7, 50) == (35, 65)          # ceil(100·0.3) = 30 points
    assert cutmix_segment(10, 0.7, 5) == (4, 7)              # 10·(1−0.7) = 3.0000000000000004 → 3
    assert cutmix_segment(101, 0.5, 50) == (25, 76)          # ceil(50.5) = 51
    assert cutmix_segment(100, 0.5, 3) == (0, 28)            # clipped at the low end
    assert cutmix_segment(100, 0.5, 99) == (74, 100)         # clipped at the high end
    assert cutmix_segment(100, 0.0, 0) == (0, 50)            # λ = 0 centred at 0: half clipped away
    g = torch.Generator().manual_seed(6)
    xa, xb = torch.zeros(3, 1, 64), torch.ones(3, 1, 64)
    for lam in (0.1, 0.45, 0.9):
        gg = torch.Generator().manual_seed(11)
        out, lam_area = cutmix(xa, xb, lam, generator=gg)
        centre = int(torch.randint(64, (1,), generator=torch.Generator().manual_seed(11)))
        lo, hi = cutmix_segment(64, lam, centre)
        ref = xa.clone()
        ref[..., lo:hi] = 1.0
        assert torch.equal(out, ref)
        assert lam_area == pytest.approx(1 - (hi - lo) / 64)
        assert out[0, 0].sum() <= math.ceil(64 * (1 - lam))  # never longer than requested
    del g


# ------------------------------------------------------------------ model
def test_glmc_model_eval_uses_fc_cb_only_and_train_returns_heads():
    torch.manual_seed(0)
    m = create_model("glmc", frontend="restcn", frontend_kwargs={"width_mult": 0.125})
    x = torch.rand(3, 1, 1024)
    m.train()
    out = m(x)
    assert set(out) == {"logits", "logits_fc", "proj", "pred", "features"}
    assert out["proj"].shape == out["pred"].shape == (3, 128) and out["logits_fc"].shape == (3, C)
    m.eval()
    with torch.no_grad():
        ev = m(x)
        h = m.frontend(x)
    assert set(ev) == {"logits", "features"}
    torch.testing.assert_close(ev["logits"], m.fc_cb(h))
    assert not torch.allclose(ev["logits"], m.fc(h))


# ------------------------------------------------------------------ views and loaders
def _bundle(tiny_data, augment=True):
    return build_peaks_bundle(tiny_data, seed=3, augment=augment)


def test_peak_collate_views_keep_x_and_differ(tiny_data):
    bundle = _bundle(tiny_data)
    items = [bundle.train[i] for i in range(5)]
    base = bundle.train_collate(items)
    multi = with_views(bundle.train_collate, 2, seed=3)(items)
    assert "views" not in base and bundle.train_collate.n_views == 1      # the original is untouched
    assert torch.equal(multi["x"], base["x"]) and torch.equal(multi["views"][0], base["x"])
    assert multi["views"][1].shape == base["x"].shape
    assert not torch.allclose(multi["views"][0], multi["views"][1])
    again = with_views(bundle.train_collate, 2, seed=3)(items)
    assert torch.equal(again["views"][1], multi["views"][1])             # a function of the seeds
    plain = with_views(_bundle(tiny_data, augment=False).train_collate, 2, seed=3)(items)
    assert torch.equal(plain["views"][0], plain["views"][1])


def test_tensor_views_for_fixed_patterns():
    g = torch.Generator().manual_seed(7)
    items = [{"x": torch.rand(1, 300, generator=g), "y_sg": i, "y_cs": 0, "idx": i} for i in range(4)]
    col = TensorViewCollate(None, 2, seed=1, step_deg=0.01)
    b = col(items)
    assert len(b["views"]) == 2 and all(v.shape == (4, 1, 300) for v in b["views"])
    assert not torch.allclose(b["views"][0], b["views"][1])
    assert all(torch.isfinite(v).all() for v in b["views"])
    assert torch.equal(col(items)["views"][1], b["views"][1])
    col.set_epoch(1)
    assert not torch.allclose(col(items)["views"][1], b["views"][1])
    # with every range at zero the views are the stored patterns
    ident = TensorViewCollate(None, 2, seed=1, shift_deg=0, blur_deg=0, scale=1.0, noise_rel=0)(items)
    assert torch.equal(ident["views"][0], ident["x"])
    # a pure shift moves the patterns by at most shift_deg (linear interpolation, zeros shifted in)
    shift = TensorViewCollate(None, 1, seed=1, step_deg=0.01, shift_deg=0.03, blur_deg=0, scale=1.0,
                              noise_rel=0)
    x = torch.zeros(4, 1, 300)
    x[:, 0, 150] = 1.0
    items2 = [{"x": x[i], "y_sg": 0, "y_cs": 0, "idx": i} for i in range(4)]
    v = shift(items2)["views"][0][:, 0]
    centroid = (v * torch.arange(300.0)).sum(-1) / v.sum(-1)
    assert ((centroid - 150).abs() <= 3.0 + 1e-4).all() and (v.sum(-1) - 1).abs().max() < 1e-5
    with pytest.raises(Exception, match="n_views"):
        TensorViewCollate(None, 2)([{"x": torch.rand(3, 4, 4), "y_sg": 0, "y_cs": 0, "idx": 0}])


def test_loader_plan_builds_reweighted_loader_with_tagged_draws(tiny_data):
    p = argparse.ArgumentParser()
    p.add_argument("--method", default="glmc")
    p.add_argument("--augment", default=True)
    GLMCLoss.add_args(p)
    args = p.parse_args(["--resample_q", "1.0"])
    plan = builders.loader_plan(args)
    assert plan == {"n_views": 2, "augment": True,
                    "extra": {"train_rb": {"sampler": "class_balanced", "q": 1.0}}}
    bundle = _bundle(tiny_data)
    loaders = builders.make_loaders(bundle, 16, 0, 3, torch.device("cpu"), plan=plan)
    rb = loaders["train_rb"]
    assert isinstance(rb.dataset, DrawTaggedDataset) and isinstance(rb.sampler, DrawTaggedSampler)
    assert len(rb.sampler) == len(bundle.train)
    batch = next(iter(rb))
    assert len(batch["views"]) == 2 and batch["x"].shape == (16, 1, 1024)
    # a sample drawn twice in an epoch gets two different patterns
    rb.sampler.set_epoch(0)
    draws = [i for _, i in rb.sampler]
    dup = next(i for i in draws if draws.count(i) > 1)
    pos = [k for k, i in enumerate(draws) if i == dup][:2]
    col = rb.collate_fn
    col.set_epoch(0)
    two = col([rb.dataset[(k, dup)] for k in pos])
    assert not torch.allclose(two["x"][0], two["x"][1])
    # q = 1: class-balanced draws; the per-epoch order is a function of (seed, epoch)
    rb.sampler.set_epoch(0)
    assert [i for _, i in rb.sampler] == draws
    labels = bundle.train.labels
    many = []
    for e in range(40):
        rb.sampler.set_epoch(e)
        many += [labels[i] for _, i in rb.sampler]
    freq = np.bincount(many)[np.unique(labels)] / len(many)
    assert np.abs(freq - 1 / 7).max() < 0.03
    # the default (single-view) plan is unchanged
    plain = builders.make_loaders(bundle, 16, 0, 3, torch.device("cpu"), plan={})
    # (peak-list data also gets "test_lab": the test patterns rendered once as a laboratory would)
    assert set(plain) - {"test_lab"} == {"train", "val", "test"} and "views" not in next(iter(plain["train"]))


def _trainer(tiny_data, rb_batch):
    bundle = _bundle(tiny_data)
    plan = {"n_views": 2, "augment": True, "extra": {"train_rb": {"sampler": "class_balanced", "q": 0.0}}}
    loaders = builders.make_loaders(bundle, 16, 0, 3, torch.device("cpu"), plan=plan)
    loaders["train_rb"] = torch.utils.data.DataLoader(
        loaders["train_rb"].dataset, batch_size=rb_batch, sampler=loaders["train_rb"].sampler,
        collate_fn=loaders["train_rb"].collate_fn, drop_last=True)
    torch.manual_seed(0)
    model = create_model("glmc", frontend="restcn", frontend_kwargs={"width_mult": 0.125})
    loss = GLMCLoss(bundle.class_counts, epochs=2)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    return GLMCTrainer(model, loss, opt, LRSchedule(0.01, 2, len(loaders["train"]), warmup_epochs=0), loaders,
                       bundle.class_counts, None, 2, show_progress=False)


def test_trainer_restarts_exhausted_reweighted_iterator_deterministically(tiny_data):
    """A re-weighted loader with fewer batches than the epoch is re-created; the same steps
    replay for a fresh trainer (resume)."""
    tr = _trainer(tiny_data, rb_batch=40)             # 2 rb batches vs 7 uniform steps
    tr.loss_fn.on_epoch_start(1)
    seen = []
    for step in range(7):
        seen.append(tr._rb_batch(1, step)["idx"].tolist())
    assert tr._rb_restarts == 3
    tr2 = _trainer(tiny_data, rb_batch=40)
    assert [tr2._rb_batch(1, s)["idx"].tolist() for s in range(7)] == seen
    assert seen[0] != seen[2]                          # a new draw after the restart
    stats = tr.train_one_epoch(1)                      # batches of 16, truncated rb batches of 40
    assert np.isfinite(stats["train_loss"]) and 0 <= stats["train_lam"] <= 1
    assert stats["train_alpha"] == pytest.approx(0.75)


# ------------------------------------------------------------------ end to end
def _args(data, out, *extra):
    return ["--data_dir", str(data), "--output_dir", str(out), "--device", "cpu", "--batch_size", "16",
            "--width_mult", "0.125", "--warmup_epochs", "0", "--seed", "3", "--method", "glmc", *extra]


def test_one_epoch_smoke(tiny_data, tmp_path):
    res = train.main(_args(tiny_data, tmp_path, "--epochs", "1", "--resample_q", "0.2"))
    run = Path(res["run_dir"])
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    rec = log[0]
    assert len(log) == 1 and np.isfinite(rec["train_loss"]) and rec["train_alpha"] == 1.0
    for k in ("train_l_bal", "train_l_rb", "train_l_mc", "train_lam", "train_sg_top1", "train_cs_acc"):
        assert np.isfinite(rec[k]), k
    assert -2.0 <= rec["train_l_mc"] <= 2.0
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["model_config"]["name"] == "glmc"
    assert ck["data_spec"]["train_loaders"]["extra"]["train_rb"]["q"] == 0.2
    assert {"fc.weight", "fc_cb.weight", "projector.weight", "predictor.weight"} <= set(ck["model"])
    assert np.isfinite(res["test"]["sg_top1"])


def test_resume_equals_uninterrupted(tiny_data, tmp_path):
    common = ["--epochs", "2"]
    train.main(_args(tiny_data, tmp_path / "A", *common, "--run_dir", str(tmp_path / "A")))
    train.main(_args(tiny_data, tmp_path / "B", *common, "--run_dir", str(tmp_path / "B"),
                     "--stop_after_epoch", "1"))
    train.main(_args(tiny_data, tmp_path / "B", *common, "--run_dir", str(tmp_path / "B"),
                     "--resume", "auto"))
    a = torch.load(tmp_path / "A" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "B" / "last.pt", weights_only=True)
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1e-6, msg=k)
    la = [json.loads(x) for x in (tmp_path / "A" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "B" / "log.jsonl").read_text().splitlines()]
    for key in ("train_loss", "train_lam", "train_alpha"):
        assert [r[key] for r in la] == pytest.approx([r[key] for r in lb], abs=1e-6), key


def test_one_epoch_on_fixed_npy_patterns_uses_tensor_views(tmp_path):
    """NPY patterns have no peak list to re-render: the views are TensorViewCollate's."""
    rng = np.random.default_rng(0)
    n, length = 48, 512
    sg = np.repeat([1, 14, 62, 225], [24, 12, 8, 4])
    x = rng.uniform(0, 1, (n, length)).astype(np.float32)
    root = tmp_path / "npy"
    write_npy(split_path(root, "toy", "train"), x, sg)
    write_npy(split_path(root, "toy", "test"), x[::4], sg[::4])
    write_dataset_json(root, "toy", GridSpec(5.0, 90.0, length, 1.5406))
    res = train.main(["--use_processed_npy", "--processed_data_dir", str(root), "--dataset", "toy",
                      "--output_dir", str(tmp_path / "Log"), "--device", "cpu", "--batch_size", "16",
                      "--width_mult", "0.125", "--warmup_epochs", "0", "--epochs", "1", "--method", "glmc"])
    rec = json.loads((Path(res["run_dir"]) / "log.jsonl").read_text().splitlines()[0])
    assert np.isfinite(rec["train_loss"]) and np.isfinite(rec["train_l_mc"])
