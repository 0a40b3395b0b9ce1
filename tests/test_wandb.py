"""wandb logging (offline, never a login) and the run directory's plots."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

import train
from tests.conftest import tiny_args
from Trainer.callbacks import choose_wandb_mode, gate_by_cs_scalars
from utils.crystal import N_SG, SG_TO_CS

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _args(data, out, *extra):
    return tiny_args(data, out, *extra)


def test_mode_respects_env_and_falls_back_offline(monkeypatch, tmp_path):
    assert choose_wandb_mode({"WANDB_MODE": "disabled"}) == "disabled"
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    assert choose_wandb_mode({}) == "offline"  # no login: offline, no prompt
    # a login but no server: offline too (the address is a closed local port)
    env = {"WANDB_API_KEY": "x" * 40, "WANDB_BASE_URL": "http://127.0.0.1:9"}
    assert choose_wandb_mode(env) == "offline"


def test_gate_by_cs_scalars_are_the_heatmap_numbers():
    rng = np.random.default_rng(0)
    y = np.array([0, 1, 1, 228, 228, 228])  # P1 (triclinic), P-1, cubic
    gate = rng.dirichlet(np.ones(8), len(y))
    out = gate_by_cs_scalars({"logits": np.zeros((len(y), N_SG)), "y_sg": y, "gate": gate})
    assert SG_TO_CS[0] == 0 and SG_TO_CS[228] == 6
    assert out["gate_by_cs/triclinic/e3"] == pytest.approx(gate[:3, 3].mean())
    assert out["gate_by_cs/cubic/e7"] == pytest.approx(gate[3:, 7].mean())
    assert not any("monoclinic" in k for k in out)  # no samples: nothing logged
    assert gate_by_cs_scalars({"logits": np.zeros((2, 10)), "y_sg": np.zeros(2, int)}) == {}


@pytest.mark.slow
def test_offline_run_holds_logged_keys_and_plots(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    res = train.main(_args(tiny_data, tmp_path / "Log", "--epochs", "1", "--use_wandb",
                           "--use_contrast_scheme2"))
    run = Path(res["run_dir"])
    files = list((run / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(files) == 1, "one offline wandb run in the run directory"
    blob = files[0].read_bytes()  # protobuf records: logged keys are stored as plain strings
    for key in ("train_loss", "train_l_dol", "train_l_sys", "train_l_sg", "lr", "train_grad_norm",
                "val_sg_top1", "val_many_acc", "val_medium_acc", "val_few_acc", "val_gate_e0",
                "val_gate_active", "gate_by_cs/", "plots/training_curves", "plots/gate_heatmap",
                "plots/per_class_vs_count", "plots/cs_confusion", "test_sg_top1", "lambda_dol"):
        assert key.encode() in blob, key
    # the run directory's plots, and test.py's space-group confusion
    spec = importlib.util.spec_from_file_location("xrd_test_cli_w", ROOT / "test.py")
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    cli.main(["--ckpt", str(run / "best.pt"), "--out_dir", str(tmp_path / "eval")])
    names = ("training_curves", "lr_schedule", "per_class_vs_count", "cs_confusion", "gate_heatmap")
    for path in [run / f"{n}.png" for n in names] + [tmp_path / "eval" / "sg_confusion.png"]:
        data = path.read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 5000, path
