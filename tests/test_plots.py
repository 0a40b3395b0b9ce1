"""metrics.plots: every plot writes a valid, non-trivial PNG, also on awkward inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from metrics import (
    plot_cs_confusion,
    plot_gate_heatmap,
    plot_lr_schedule,
    plot_per_class_vs_count,
    plot_sg_confusion_by_cs,
    plot_training_curves,
)
from utils.crystal import N_SG, SG_TO_CS

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, min_bytes: int = 5000) -> None:
    assert path.exists(), path
    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC
    assert len(data) > min_bytes  # more than an empty canvas
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 300 and height > 300


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    counts = rng.integers(0, 3000, N_SG)
    counts[:3] = 0
    y = np.repeat(np.arange(N_SG), 5)
    pred = np.where(rng.random(len(y)) < 0.6, y, rng.integers(0, N_SG, len(y)))
    acc = np.array([np.mean(pred[y == c] == c) for c in range(N_SG)])
    acc[5:8] = np.nan  # absent from the evaluation set
    return rng, counts, y, pred, acc


def test_training_curves(tmp_path):
    recs = [{"epoch": e, "lr": 1e-3 * (1 - e / 10), "train_loss": 2 - 0.1 * e, "train_loss_dol": 1.0,
             "val_loss": "nan" if e == 3 else 2.5 - 0.1 * e, "val_sg_top1": 0.05 * e,
             "val_few_acc": 0.03 * e, "val_n_few": 12, "note": "text is ignored"} for e in range(10)]
    out = plot_training_curves(recs, tmp_path / "sub" / "curves.png")
    assert out == tmp_path / "sub" / "curves.png"
    _assert_png(out)
    _assert_png(plot_training_curves([], tmp_path / "empty.png"), min_bytes=1000)
    _assert_png(plot_training_curves(recs, tmp_path / "chosen.png", acc_keys=["val_n_few"]))


@pytest.mark.parametrize("preset", ["standard", "icl-xrd"])
def test_per_class_vs_count(tmp_path, data, preset):
    _, counts, _, _, acc = data
    _assert_png(plot_per_class_vs_count(torch.from_numpy(acc), counts, tmp_path / "pc.png", preset=preset))
    _assert_png(plot_per_class_vs_count(np.full(N_SG, np.nan), counts, tmp_path / "none.png"))


def test_confusions(tmp_path, data):
    _, _, y, pred, _ = data
    _assert_png(plot_cs_confusion(SG_TO_CS[y], SG_TO_CS[pred], tmp_path / "cs.png"))
    _assert_png(plot_cs_confusion([0, 0, 6], [0, 1, 6], tmp_path / "cs_sparse.png"))  # absent rows
    _assert_png(plot_sg_confusion_by_cs(torch.from_numpy(y), torch.from_numpy(pred), tmp_path / "sg.png"))


def test_gate_heatmap(tmp_path, data):
    rng, _, y, _, _ = data
    gate = rng.dirichlet(np.ones(8), len(y))
    ycs = SG_TO_CS[y].copy()
    ycs[ycs == 4] = 5  # one crystal system without samples: a grey row, no crash
    _assert_png(plot_gate_heatmap(torch.from_numpy(gate), ycs, tmp_path / "gate.png"))


def test_lr_schedule(tmp_path):
    lrs = np.concatenate([np.linspace(0, 5e-4, 50), 5e-4 * 0.5 * (1 + np.cos(np.linspace(0, np.pi, 450)))])
    _assert_png(plot_lr_schedule(lrs, tmp_path / "lr.png", steps_per_epoch=10))
    _assert_png(plot_lr_schedule(np.stack([lrs, lrs / 10], 1), tmp_path / "lr2.png"))
