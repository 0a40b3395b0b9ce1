"""Multi-process training: the shard sampler, the collective helpers, and a real 2-process torchrun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from datasets.samplers import ClassBalancedSampler, EpochShuffleSampler, ShardSampler
from datasets.views import DrawTaggedSampler
from utils import distributed as ddp

ROOT = Path(__file__).resolve().parents[1]
COUNTS = np.array([400, 120, 40, 12, 5, 2])  # long-tailed, 579 samples
LABELS = np.repeat(np.arange(len(COUNTS)), COUNTS)


def _shards(sampler, world: int, epoch: int) -> list[list]:
    out = []
    for r in range(world):
        s = ShardSampler(sampler, world, r)
        s.set_epoch(epoch)
        out.append(list(s))
    return out


@pytest.mark.parametrize("world", [2, 3, 4])
def test_shards_cover_the_epoch_and_rebuild_the_global_batches(world):
    base = EpochShuffleSampler(len(LABELS), seed=5)
    shards = _shards(base, world, epoch=3)
    base.set_epoch(3)
    order = list(base)
    assert len({len(s) for s in shards}) == 1 and len(shards[0]) == -(-len(order) // world)
    merged = [i for pos in zip(*shards, strict=True) for i in pos]  # position p·W + r
    assert merged[: len(order)] == order  # every index once, in the epoch's order; then padding
    assert merged[len(order):] == order[: len(merged) - len(order)]
    # per-process batch b: step k's union over ranks is the single-process batch of size b·W
    b = 8
    for k in range(3):
        union = sorted(i for s in shards for i in s[k * b:(k + 1) * b])
        assert union == sorted(order[k * b * world:(k + 1) * b * world])
    # a new epoch, a new order (set_epoch reaches the wrapped sampler)
    assert _shards(base, world, epoch=4)[0] != shards[0]


@pytest.mark.parametrize("world", [2, 4])
def test_every_rank_sees_the_long_tailed_profile(world):
    """Each shard is a random 1/W of the epoch: per class, its count is n_c/W up to sampling noise
    in one epoch (hypergeometric, bounded here by 4σ + 1), and exactly on average over epochs."""
    base = EpochShuffleSampler(len(LABELS), seed=0)
    total = np.zeros((world, len(COUNTS)))
    epochs = 50
    for e in range(epochs):
        for r, s in enumerate(_shards(base, world, e)):
            h = np.bincount(LABELS[s], minlength=len(COUNTS))
            assert np.all(np.abs(h - COUNTS / world) <= 4 * np.sqrt(COUNTS / world) + 1), (e, r, h)
            total[r] += h
    np.testing.assert_allclose(total / epochs, np.broadcast_to(COUNTS / world, total.shape),
                               rtol=0.1, atol=0.5)


def test_class_balanced_draws_shard_with_global_tags():
    """GLMC's re-balanced loader: the full draw list is made identically on every rank, each rank
    keeps its stride, and the draw tags (augmentation keys) stay unique across ranks."""
    world = 2
    tagged = DrawTaggedSampler(ClassBalancedSampler(LABELS, q=1.0, seed=1))
    shards = _shards(tagged, world, epoch=2)
    tagged.set_epoch(2)
    full = list(tagged)
    merged = [t for pos in zip(*shards, strict=True) for t in pos][: len(full)]
    assert merged == full
    tags = [t for s in shards for t, _ in s][: len(full)]
    assert len(set(tags)) == len(full)
    draws = np.bincount(LABELS[[i for s in shards for _, i in s]], minlength=len(COUNTS))
    assert draws.min() > 0.5 * draws.mean()  # re-balanced: the tail is drawn about as often


def test_helpers_are_no_ops_in_one_process():
    assert not ddp.is_distributed() and ddp.world_size() == 1 and ddp.rank() == 0 and ddp.is_main()
    assert ddp.all_reduce_sum({"a": 1.5}) == {"a": 1.5} and ddp.all_reduce_mean({"a": 2.0}) == {"a": 2.0}
    assert ddp.all_true(True) and not ddp.all_true(False)
    assert ddp.broadcast_object("x") == "x"
    a = np.arange(5)
    np.testing.assert_array_equal(ddp.gather_interleaved(a, 3), a[:3])
    m = torch.nn.Linear(2, 2)
    assert ddp.unwrap(m) is m and ddp.wrap_ddp(m, torch.device("cpu")) is m
    assert ddp.init_from_env(torch.device("cpu")) == torch.device("cpu")  # no WORLD_SIZE: no group


def _worker(r: int, world: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=r, world_size=world)
    try:
        n = 7
        shard = ShardSampler(EpochShuffleSampler(n, shuffle=False), world, r)
        mine = np.array([[i, 10 * i] for i in shard])  # rank r: positions r, r+W, ... (padded)
        res = {
            "gathered": ddp.gather_interleaved(mine, n).tolist(),
            "sum": ddp.all_reduce_sum({"x": r + 1.0, "y": 1.0}),
            "mean": ddp.all_reduce_mean({"x": float(r)}),
            "max": ddp.all_reduce_max({"t": float(r)}),
            "all_true": ddp.all_true(r == 0), "all_true_everywhere": ddp.all_true(True),
            "obj": ddp.broadcast_object(f"rank{r}"),
        }
        m = torch.nn.BatchNorm1d(3)
        m.running_mean.fill_(float(r))
        ddp.broadcast_module(m, buffers_only=True)
        res["bn"] = m.running_mean.tolist()
        Path(out_dir, f"{r}.json").write_text(json.dumps(res))
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # ~5 s: two spawned interpreters importing torch
def test_collective_helpers_on_two_processes(tmp_path):
    world = 2
    mp.spawn(_worker, args=(world, str(tmp_path / "store"), str(tmp_path)), nprocs=world)
    res = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(world)]
    for r in res:
        assert r["gathered"] == [[i, 10 * i] for i in range(7)]  # padding dropped, in order
        assert r["sum"] == {"x": 3.0, "y": 2.0} and r["mean"] == {"x": 0.5} and r["max"] == {"t": 1.0}
        assert r["all_true"] is False and r["all_true_everywhere"] is True
        assert r["obj"] == "rank0" and r["bn"] == [0.0, 0.0, 0.0]


def _torchrun(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_MODE": "disabled", "MPLBACKEND": "Agg"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "train.py", *args]
    res = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


@pytest.mark.slow
def test_two_process_training_then_resume_then_test(tiny_data, tmp_path):
    """Two CPU processes (gloo): one epoch, stop; resume for a second; rank 0 alone wrote the run
    directory; best.pt (bare state dict) is read by the single-process test.py."""
    run = tmp_path / "run"
    common = ["--data_dir", str(tiny_data), "--output_dir", str(tmp_path / "Log"), "--run_dir", str(run),
              "--device", "cpu", "--batch_size", "8", "--width_mult", "0.125", "--use_adamw",
              "--warmup_epochs", "0.5", "--seed", "3", "--epochs", "2", "--method", "ce"]
    _torchrun([*common, "--stop_after_epoch", "1"], tmp_path)
    assert len((run / "log.jsonl").read_text().splitlines()) == 1 and (run / "last.pt").is_file()
    res = _torchrun([*common, "--resume", "auto"], tmp_path)
    assert res.stdout.count("SG top-1 |") == 1  # only rank 0 prints the table
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2] and all(np.isfinite(r["train_loss"]) for r in log)
    assert log[-1]["val_n_samples"] == 28  # the whole val split, gathered from both ranks, no padding
    assert sorted(p.name for p in run.iterdir() if p.name.startswith("args")) == ["args.yaml"]
    assert not (tmp_path / "Log").exists()  # no stray run dir from rank 1
    saved = json.loads((run / "test_metrics.json").read_text())
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert not any(k.startswith("module.") for k in ckpt["model"])
    out = subprocess.run([sys.executable, "test.py", "--ckpt", str(run / "best.pt"), "--device", "cpu",
                          "--out_dir", str(tmp_path / "eval")], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1", "MPLBACKEND": "Agg"}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    single = json.loads((tmp_path / "eval" / "test_metrics.json").read_text())
    for k in ("sg_top1", "sg_top5", "macro_f1", "n_samples"):
        assert single[k] == pytest.approx(saved[k]), k
