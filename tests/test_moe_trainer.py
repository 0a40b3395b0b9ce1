"""MoETrainer (issue 12, item 11): ICL's own loop under the name the seed's users know, holding
gate usage, the loss memory updates, classifier re-training and the loss-component line, while
the base Trainer and Evaluator stay generic."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from loss import LOSSES
from tests.conftest import tiny_args
from Trainer import TRAINERS, Evaluator, MoETrainer, Trainer
from Trainer.moe import gate_active
from utils.checkpoint import load_checkpoint


def messages(run_dir: Path) -> list[str]:
    """The run's log messages (train.py configures loguru itself, so read its train.log)."""
    return [x.split(" | ", 2)[2] for x in (run_dir / "train.log").read_text().splitlines()]


def test_icl_is_trained_by_moetrainer():
    assert TRAINERS.get(LOSSES.get("icl").trainer) is MoETrainer
    assert issubclass(MoETrainer, Trainer)
    for other in ("ce", "glmc", "ncl", "arb", "gh"):
        assert not issubclass(TRAINERS.get(LOSSES.get(other).trainer), MoETrainer)


def test_gate_active_counts_experts_with_half_their_share():
    assert gate_active([0.25, 0.25, 0.25, 0.25]) == 4
    assert gate_active([0.7, 0.2, 0.06, 0.04]) == 2  # 1/(2K) = 0.125
    assert gate_active([]) == 0


def test_icl_run_logs_gate_usage_components_and_updates_the_memory(tiny_data, tmp_path):
    res = train.main(tiny_args(tiny_data, tmp_path, "--epochs", "1", "--method", "icl",
                               "--lambda_hnm", "0.5", "--run_dir", str(tmp_path / "run")))
    rec = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[0])
    train_gate = [rec[f"train_gate_e{k}"] for k in range(8)]
    assert sum(train_gate) == pytest.approx(1.0, abs=1e-4)  # mean of rows that sum to 1
    assert rec["train_gate_active"] == gate_active(train_gate)
    assert sum(rec[f"val_gate_e{k}"] for k in range(8)) == pytest.approx(1.0, abs=1e-4)
    assert "gate_e0" in res["test"] and "gate_active" in res["test"]
    line = next(m for m in messages(tmp_path / "run") if m.startswith("epoch 1/1 icl: "))
    for part in ("l_dol ", "l_col ", "l_sys ", "l_sg ", "l_scl ", "l_hnm ", "experts active"):
        assert part in line, line
    # the trainer updated the hard-negative memory after each step: prototypes exist for the
    # classes seen in training, and the confusion counts hold the training mistakes
    hnm = {k.split("hnm.")[1]: v for k, v in load_checkpoint(tmp_path / "run" / "last.pt")["loss"].items()
           if "hnm." in k}
    assert hnm["prototypes"].shape[0] == 230 and int(hnm["seen"].sum()) == 7
    assert float(hnm["confusion"].sum()) > 0


def test_generic_evaluator_knows_no_gate(tiny_data):
    model = torch.nn.Linear(4, 230)

    class Loader(list):
        pass

    batch = {"x": torch.randn(6, 4), "y_sg": torch.arange(6), "y_cs": torch.zeros(6, dtype=torch.long),
             "idx": torch.arange(6)}

    class WithGate(torch.nn.Module):
        def forward(self, x):
            return {"logits": model(x), "gate": torch.full((len(x), 8), 1 / 8)}

    ev = Evaluator(WithGate(), np.ones(230))
    metrics = ev.summarize(ev.predict(Loader([batch])))
    assert "sg_top1" in metrics and not any(k.startswith("gate") for k in metrics)


def test_retrain_epochs_freeze_all_but_the_expert_classifiers(tiny_data, tmp_path):
    common = ["--epochs", "2", "--method", "icl", "--retrain_epochs", "1", "--run_dir", str(tmp_path)]
    train.main(tiny_args(tiny_data, tmp_path, *common, "--stop_after_epoch", "1"))
    before = load_checkpoint(tmp_path / "last.pt")["model"]
    train.main(tiny_args(tiny_data, tmp_path, *common, "--resume", "auto"))  # the re-training epoch
    after = load_checkpoint(tmp_path / "last.pt")["model"]
    assert any(m.startswith("epoch 2: classifier re-training") for m in messages(tmp_path))
    assert not torch.equal(before["experts.weight"], after["experts.weight"])
    params = {n for n, _ in train_model_params(tmp_path)}
    frozen = [n for n in params if n != "experts.weight"]
    assert len(frozen) > 10
    for name in frozen:
        assert torch.equal(before[name], after[name]), f"{name} changed while re-training classifiers"


def train_model_params(run_dir: Path):
    """Parameter names of the run's model, rebuilt from its checkpoint."""
    import builders

    ckpt = load_checkpoint(run_dir / "last.pt")
    return builders.model_from_checkpoint(ckpt, run_dir / "last.pt").named_parameters()
