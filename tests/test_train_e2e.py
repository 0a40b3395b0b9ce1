"""End to end on a tiny dataset: train.main → test.main → predict; resume equals uninterrupted."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from tests.conftest import tiny_args

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str):
    # test.py shares its name with the stdlib's `test` package: load it by path.
    spec = importlib.util.spec_from_file_location(f"xrd_{name}_cli", ROOT / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _args(data, out, *extra):
    return tiny_args(data, out, *extra)


@pytest.mark.parametrize("method", ["icl", "ce"])
def test_train_then_test_then_predict(tiny_data, tmp_path, method, capsys):
    res = train.main(_args(tiny_data, tmp_path / "Log", "--epochs", "1", "--method", method,
                           "--use_contrast_scheme2" if method == "icl" else "--save_log=True"))
    run = Path(res["run_dir"])
    for f in ("args.yaml", "log.jsonl", "train.log", "last.pt", "best.pt", "test_metrics.json",
              "per_class.csv", "training_curves.png", "lr_schedule.png", "per_class_vs_count.png"):
        assert (run / f).is_file() and (run / f).stat().st_size > 0, f
    assert run.parent == tmp_path / "Log" / "sg" and run.name.startswith("xrd_mp-1_")
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and np.isfinite(log[0]["train_loss"])
    # training accuracy next to validation (issue 10): SG top-1, CS, and the CS head for ICL
    assert 0 <= log[0]["train_sg_top1"] <= log[0]["train_cs_acc"] <= 1
    assert ("train_cs_head_acc" in log[0]) == (method == "icl")
    assert "train top1" in (run / "train.log").read_text()
    out = capsys.readouterr().out
    assert "SG top-1" in out and "Few-shot" in out

    metrics = _load("test").main(["--ckpt", str(run / "best.pt"), "--out_dir", str(tmp_path / "eval")])
    saved = json.loads((tmp_path / "eval" / "test_metrics.json").read_text())
    assert saved["sg_top1"] == pytest.approx(metrics["sg_top1"])
    assert metrics["sg_top1"] == pytest.approx(res["test"]["sg_top1"])
    for k in ("sg_top5", "sg_top1_enantio", "cs_acc", "macro_f1", "many_acc", "few_acc"):
        assert k in metrics

    # ablations that need no training: shot groups from another count file, inference masking
    counts = tmp_path / "counts.csv"
    counts.write_text("".join(f"{g},500\n" for g in range(1, 231)))
    extra = ["--ckpt", str(run / "best.pt"), "--out_dir", str(tmp_path / "eval2"),
             "--eval_counts_path", str(counts), "--mask_mode", "none"]
    if method == "icl":
        other = _load("test").main(extra)
        assert other["n_few"] == 0 and other["n_medium"] == 0 and other["n_many"] > 0  # all > 100
        shifted = _load("test").main(extra[:4] + ["--cs_posthoc_adjust", "1"])
        assert 0 <= shifted["cs_acc"] <= 1 and "cs_head_acc" in shifted
    else:
        with pytest.raises(SystemExit, match="no crystal-system masking"):
            _load("test").main(extra)
        with pytest.raises(SystemExit, match="no crystal-system head"):
            _load("test").main(extra[:4] + ["--cs_posthoc_adjust", "1"])


def test_resume_equals_uninterrupted(tiny_data, tmp_path):
    common = ["--epochs", "2", "--use_contrast_scheme2"]
    full = train.main(_args(tiny_data, tmp_path / "A", *common, "--run_dir", str(tmp_path / "A")))
    part = train.main(_args(tiny_data, tmp_path / "B", *common, "--run_dir", str(tmp_path / "B"),
                            "--stop_after_epoch", "1"))
    assert part["test"] is None
    assert json.loads((tmp_path / "B" / "log.jsonl").read_text().splitlines()[-1])["epoch"] == 1
    rest = train.main(_args(tiny_data, tmp_path / "B", *common, "--run_dir", str(tmp_path / "B"),
                            "--resume", "auto"))
    a = torch.load(tmp_path / "A" / "last.pt", weights_only=True)
    b = torch.load(tmp_path / "B" / "last.pt", weights_only=True)
    assert a["epoch"] == b["epoch"] == 2
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=0, atol=1e-6, msg=k)
    assert rest["test"]["sg_top1"] == pytest.approx(full["test"]["sg_top1"])
    la = [json.loads(x) for x in (tmp_path / "A" / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (tmp_path / "B" / "log.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in la] == pytest.approx([r["train_loss"] for r in lb], abs=1e-6)


def test_seed_command_line_parses():
    argv = ("--use_processed_npy --processed_data_dir /d --rule_matrix_path /r.csv --device 0 "
            "--loss_scheme scheme2 --use_contrast_scheme2 --use_adamw --adjust_lr_strategy "
            "--lr_restart_enabled --lambda_dol 0.5 --lambda_hier 1.5 --lambda_scl 0.2 --max_grad_norm 1.0 "
            "--epochs 100 --seed 42 --save_log True --frontend_type vit --vit_patch_size 50 "
            "--vit_embed_dim 256 --vit_depth 6 --vit_num_heads 8 --vit_mlp_ratio 4.0 --vit_use_cls_token")
    from config.args import parse_args
    a = parse_args(argv.split(), train.get_parser(argv.split()))
    assert a.use_processed_npy and a.processed_data_dir == "/d" and a.rule_matrix_path == "/r.csv"
    assert a.use_contrast_scheme2 and a.use_adamw and a.adjust_lr_strategy and a.lr_restart_enabled
    assert (a.lambda_dol, a.lambda_hier, a.lambda_scl, a.lambda_col) == (0.5, 1.5, 0.2, 0.3)
    assert a.save_log is True and a.epochs == 100 and a.frontend_type == "vit" and a.vit_use_cls_token
    assert parse_args(["--save_log", "False"], train.get_parser([])).save_log is False
    d = parse_args([], train.get_parser([]))
    assert (d.device, d.loss_scheme, d.early_decay_ratio, d.early_decay_target_lr) == \
        ("0", "scheme2", 0.2, 1e-3)
    assert (d.grad_warn_threshold, d.max_grad_norm, d.disable_col, d.use_contrast_scheme2) == \
        (100.0, 1.0, False, False)


def test_predict_prints_cs_and_top5_for_xy_files(tiny_data, tmp_path, capsys):
    from datasets import READERS

    res = train.main(_args(tiny_data, tmp_path / "Log", "--epochs", "1"))
    bundle = READERS.build("peaks", root=tiny_data, name="tiny", augment=False)
    batch = bundle.eval_collate([bundle.test[i] for i in (0, 5)])
    tt = bundle.grid.two_theta()
    folder = tmp_path / "measured"
    folder.mkdir()
    for j, x in enumerate(batch["x"][:, 0].numpy()):
        np.savetxt(folder / f"p{j}.xy", np.c_[tt, 1000 * x], header="wavelength: 1.5406\n2theta intensity")
    predict = _load("predict")
    rows = predict.main(["--ckpt", str(Path(res["run_dir"]) / "best.pt"), str(folder),
                         "--csv", str(tmp_path / "pred.csv")])
    out = capsys.readouterr().out
    assert len(rows) == 2 and "crystal system:" in out and "No." in out
    for r in rows:
        assert len(r["top"]) == 5 and 0 < r["p_cs"] <= 1
        probs = [p for _, _, p in r["top"]]
        assert probs == sorted(probs, reverse=True)
    lines = (tmp_path / "pred.csv").read_text().splitlines()
    assert len(lines) == 3 and lines[0].startswith("file,crystal_system,p_cs,sg1,symbol1,p1")
    with pytest.raises(SystemExit):
        predict.main(["--ckpt", str(Path(res["run_dir"]) / "best.pt"), str(tmp_path / "missing.xy")])


def test_snapshots_at_patterns_seen_for_learning_curves(tiny_data, tmp_path):
    """--snapshot_patterns keeps the weights of the first epoch end at or past each count; the
    count of patterns seen is cumulative in log.jsonl and survives a resume; test.py reads a
    snapshot like best.pt."""
    run = tmp_path / "R"
    common = ["--epochs", "3", "--method", "ce", "--run_dir", str(run)]
    first = train.main(_args(tiny_data, tmp_path, *common, "--stop_after_epoch", "1",
                             "--snapshot_patterns", "1,2.5k"))
    assert first["test"] is None
    per_epoch = json.loads((run / "log.jsonl").read_text().splitlines()[0])["patterns_seen"]
    assert per_epoch > 0
    # the milestones as counts: one crossed in epoch 2, one in epoch 3 (after a resume)
    marks = f"{per_epoch + 1},{2 * per_epoch + 1}"
    train.main(_args(tiny_data, tmp_path, *common, "--resume", "auto", "--snapshot_patterns", marks))
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["patterns_seen"] for r in log] == [per_epoch, 2 * per_epoch, 3 * per_epoch]
    assert sorted(p.name for p in run.glob("seen_*.pt")) == sorted(
        {f"seen_{per_epoch}.pt", f"seen_{2 * per_epoch}.pt", f"seen_{3 * per_epoch}.pt"})
    snap = torch.load(run / f"seen_{2 * per_epoch}.pt", weights_only=True)
    assert snap["epoch"] == 2 and snap["patterns_seen"] == 2 * per_epoch
    metrics = _load("test").main(["--ckpt", str(run / f"seen_{2 * per_epoch}.pt"),
                                  "--out_dir", str(tmp_path / "eval")])
    assert 0 <= metrics["sg_top1"] <= 1


def test_snapshot_counts_are_validated(capsys):
    from config.args import parse_args, pattern_counts
    assert pattern_counts("1M,50k,50000") == [50_000, 1_000_000] and pattern_counts("") == []
    with pytest.raises(SystemExit) as exc:  # refused while parsing, before any work
        parse_args(["--snapshot_patterns", "fifty"], train.get_parser([]))
    assert exc.value.code == 2 and "fifty" in capsys.readouterr().err
