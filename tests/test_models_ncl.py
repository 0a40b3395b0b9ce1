"""NCL model (models/ncl.py), its trainer step (Trainer/ncl.py) and 1-epoch runs of
``train.main(["--method", "ncl", ...])`` on the tiny peak dataset."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import builders
import train
from loss import NCLLoss
from models import create_model
from models.ncl import NCLModel, ncl_model_kwargs
from Trainer import TRAINERS
from utils.errors import ConfigError

L, B, C = 256, 6, 230
SMALL = {"width_mult": 0.125}


def _model(**kw) -> NCLModel:
    torch.manual_seed(0)
    return create_model("ncl", frontend="restcn", frontend_kwargs=SMALL, **kw)


def _x(seed=1, batch=B):
    return torch.rand(batch, 1, L, generator=torch.Generator().manual_seed(seed)) * 100


def test_experts_are_independent_backbones_and_logits_are_their_mean():
    m = _model().eval()
    assert len(m.backbones) == 3
    w = [dict(bb.named_parameters())["blocks.0.conv1.weight"] for bb in m.backbones]
    assert not torch.equal(w[0], w[1]) and not torch.equal(w[1], w[2])     # independent init
    x = _x()
    with torch.no_grad():
        out = m(x)
        for k, bb in enumerate(m.backbones):   # naive: expert k = own backbone + own linear layer
            ref = bb(x) @ m.classifier.weight[k] + m.classifier.bias[k]
            torch.testing.assert_close(out["expert_logits"][:, k], ref, rtol=1e-5, atol=1e-5)
    assert out["expert_logits"].shape == (B, 3, C) and out["logits"].shape == (B, C)
    torch.testing.assert_close(out["logits"], out["expert_logits"].mean(1))
    torch.testing.assert_close(out["features"].norm(dim=-1), torch.ones(B))
    assert "moco_logits" not in out and not hasattr(m, "queue")


def test_shared_frontend_and_cosine_classifier():
    m = _model(share_frontend=True, classifier="cosine", cosine_scale=16.0, num_experts=2).eval()
    assert len(m.backbones) == 1 and m.classifier.bias is None
    x = _x()
    with torch.no_grad():
        out = m(x)
        h = F.normalize(m.backbones[0](x), dim=-1)
        for k in range(2):
            ref = 16.0 * h @ F.normalize(m.classifier.weight[k], dim=0)
            torch.testing.assert_close(out["expert_logits"][:, k], ref, rtol=1e-5, atol=1e-5)
    assert out["expert_logits"].abs().max() <= 16.0 + 1e-4


def test_every_trainable_parameter_gets_gradient():
    m = _model(moco_dim=8, moco_queue=10).train()
    out = m(_x(), key_view=_x(seed=2))
    loss = NCLLoss(np.ones(C), con_ratio=1.0)(out, {"y_sg": torch.arange(B)})["loss"]
    loss.backward()
    for name, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert name.startswith(("key_backbones", "key_mlp")) and p.grad is None, name


@pytest.mark.parametrize("key_mlp", ["frozen", "ema"])
def test_moco_queue_momentum_and_state_dict(key_mlp):
    m = _model(moco_dim=8, moco_queue=10, moco_momentum=0.9, moco_key_mlp=key_mlp).train()
    kb0 = [p.clone() for p in m.key_backbones.parameters()]
    km0 = [p.clone() for p in m.key_mlp.parameters()]
    qb = [p.clone() for p in m.backbones.parameters()]
    with torch.no_grad():                       # make query != key so the EMA step is visible
        for p in m.backbones.parameters():
            p.add_(0.5)
        for p in m.query_mlp.parameters():
            p.add_(0.5)
    out = m(_x(), key_view=_x(seed=2))
    assert out["moco_logits"].shape == (B, 3, 1 + 10) and out["proj"].shape == (B, 3, 8)
    for p, k0, q in zip(m.key_backbones.parameters(), kb0, qb, strict=True):
        torch.testing.assert_close(p, 0.9 * k0 + 0.1 * (q + 0.5))
    moved = any(not torch.equal(p, k0) for p, k0 in zip(m.key_mlp.parameters(), km0, strict=True))
    assert moved == (key_mlp == "ema")
    # positives are q·k of the keys just enqueued (slots 0..5), negatives q·queue before enqueueing
    assert int(m.queue_ptr) == B
    q = out["proj"].detach()
    keys = m.queue[:, :, :B].permute(2, 0, 1)                                   # (B, K, d)
    torch.testing.assert_close(out["moco_logits"][..., 0].detach(), (q * keys).sum(-1))
    torch.testing.assert_close(m.queue.norm(dim=1), torch.ones(3, 10))
    m(_x(seed=3), key_view=_x(seed=4))        # wraps around: 6 + 6 = 12 → pointer 2
    assert int(m.queue_ptr) == 2
    clone = create_model(**json.loads(json.dumps(m.config)))
    assert {"queue", "queue_ptr"} <= set(clone.state_dict())
    clone.load_state_dict(m.state_dict())
    assert torch.equal(clone.queue, m.queue) and int(clone.queue_ptr) == 2
    m.eval()
    clone.eval()
    with torch.no_grad():
        assert torch.equal(m(_x())["logits"], clone(_x())["logits"])
        assert "moco_logits" not in m(_x(), key_view=_x())   # eval: no queue update


def test_model_kwargs_from_flags_and_validation():
    p = argparse.ArgumentParser()
    NCLLoss.add_args(p)
    kw = ncl_model_kwargs(p.parse_args(["--ncl_num_experts", "2"]))
    assert kw["num_experts"] == 2 and kw["moco_dim"] == 0            # no MoCo without its loss weight
    assert ncl_model_kwargs(p.parse_args(["--ncl_con_ratio", "1"]))["moco_dim"] == 64
    assert NCLModel.args_to_kwargs is not None
    with pytest.raises(ConfigError, match="--method ncl"):
        ncl_model_kwargs(argparse.Namespace())
    for bad in (dict(num_experts=0), dict(classifier="mlp"), dict(moco_momentum=1.0)):
        with pytest.raises(ConfigError):
            _model(**bad)


class _Spy(torch.nn.Module):
    """Records the key view it was given; a one-parameter 'model' for the trainer step test."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.seen = []

    def forward(self, x, key_view=None):
        self.seen.append((x, key_view))
        return {"logits": self.w * x.sum((1, 2))[:, None].expand(-1, 3)}


def test_trainer_feeds_the_second_view_to_the_key_encoders():
    trainer_cls = TRAINERS.get(NCLLoss.trainer)
    model = _Spy()
    loss_fn = lambda out, batch: {"loss": out["logits"].sum()}  # noqa: E731
    t = trainer_cls.__new__(trainer_cls)
    t.model, t.loss_fn, t.device, t.amp_dtype = model, loss_fn, torch.device("cpu"), None
    t.backward_step = lambda losses, epoch, step: {"loss": float(losses["loss"].detach())}
    x, x2 = torch.ones(2, 1, 4), 2 * torch.ones(2, 1, 4)
    t.train_step({"x": x, "y_sg": torch.zeros(2, dtype=torch.long), "views": [x, x2]}, 0, 0)
    assert model.seen[-1][0] is x and model.seen[-1][1] is x2
    t.forward_loss = lambda batch: (None, loss_fn(model(batch["x"]), batch))
    t.train_step({"x": x, "y_sg": torch.zeros(2, dtype=torch.long)}, 0, 0)
    assert model.seen[-1][1] is None


def _args(data, out, *extra):
    return ["--data_dir", str(data), "--output_dir", str(out), "--device", "cpu", "--batch_size", "16",
            "--width_mult", "0.125", "--epochs", "1", "--seed", "3", "--method", "ncl", *extra]


@pytest.mark.parametrize("extra", [(), ("--ncl_con_ratio", "1.0", "--ncl_moco_dim", "16",
                                        "--ncl_moco_queue", "32", "--ncl_hcm_mode", "restrict")],
                         ids=["default", "moco-restrict"])
def test_one_epoch_smoke_run(tiny_data, tmp_path, extra):
    res = train.main(_args(tiny_data, tmp_path / "Log", "--lr", "0.01", *extra))
    run = Path(res["run_dir"])
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and np.isfinite(log[0]["train_loss"]) and np.isfinite(log[0]["train_l_nbod"])
    assert (log[0]["train_l_con"] > 0) == bool(extra)
    assert 0.0 <= res["test"]["sg_top1"] <= 1.0
    ckpt = torch.load(run / "best.pt", map_location="cpu", weights_only=False)
    cfg = ckpt["model_config"]
    assert cfg["name"] == "ncl" and cfg["num_experts"] == 3 and cfg["moco_dim"] == (16 if extra else 0)
    assert "log_counts" in ckpt["loss"]
    model = builders.build_model(cfg)
    model.load_state_dict(ckpt["model"])     # rebuilds from the checkpoint alone (queues included)
