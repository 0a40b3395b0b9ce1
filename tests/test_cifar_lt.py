"""CIFAR-10/100-LT reader: profile counts of docs/methods/conventions.md §1.1, the three sampling
rules against naive re-implementations, no duplicates, the batch contract, seeded augmentations,
the restricted unpickler and the reader's errors, ResNet-32, and 1-epoch runs through train.main
on tiny CIFAR-format folders written here."""

from __future__ import annotations

import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import train
from datasets import READERS, resolve_data_source
from datasets.cifar.cifar_lt import MEAN, STD, CifarCollate, lt_counts, lt_indices
from datasets.cifar.image_augment import crop_flip, simclr_view
from models import create_frontend
from utils.errors import ConfigError, DataError


def _images(labels: np.ndarray, offset: int) -> np.ndarray:
    """(N, 3072) uint8 images whose first two bytes encode a unique id (offset + row)."""
    n = len(labels)
    rng = np.random.default_rng(offset)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    ids = np.arange(n) + offset
    data[:, 0], data[:, 1] = ids // 256, ids % 256
    return data


def write_cifar10(root: Path, per_class_batch: int = 2, test_per_class: int = 2) -> Path:
    """cifar-10-batches-py with 5 training batches (``per_class_batch`` images per class each)."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for b in range(5):
        y = np.tile(np.arange(10), per_class_batch)
        np.random.default_rng(b).shuffle(y)
        with open(d / f"data_batch_{b + 1}", "wb") as fh:
            pickle.dump({b"batch_label": b"x", b"labels": y.tolist(), b"data": _images(y, 1000 * b)}, fh,
                        protocol=2)
    y = np.repeat(np.arange(10), test_per_class)
    with open(d / "test_batch", "wb") as fh:
        pickle.dump({b"labels": y.tolist(), b"data": _images(y, 9000)}, fh, protocol=2)
    with open(d / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, fh)
    return d


def write_cifar100(root: Path, per_class: int = 3) -> Path:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    y = np.repeat(np.arange(100), per_class)
    with open(d / "train", "wb") as fh:
        pickle.dump({b"fine_labels": y.tolist(), b"coarse_labels": (y // 5).tolist(),
                     b"data": _images(y, 0)}, fh, protocol=4)
    y = np.arange(100)
    with open(d / "test", "wb") as fh:
        pickle.dump({b"fine_labels": y.tolist(), b"coarse_labels": (y // 5).tolist(),
                     b"data": _images(y, 5000)}, fh, protocol=5)
    return d


@pytest.fixture(scope="module")
def cifar10_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("cifar")
    write_cifar10(root)
    return root


def _naive_counts(n_max, c, imb):
    return [math.floor(n_max * imb ** (-i / (c - 1))) for i in range(c)]


@pytest.mark.parametrize("c,n_max,imb,total", [
    (100, 500, 100, 10847), (100, 500, 50, 12608), (100, 500, 10, 19573),
    (10, 5000, 100, 12406), (10, 5000, 50, 13996), (10, 5000, 10, 20431)])
def test_profile_counts_match_conventions(c, n_max, imb, total):
    counts = lt_counts(n_max, c, imb)
    assert sum(counts) == total and counts == _naive_counts(n_max, c, imb)
    if (c, imb) == (10, 100):
        assert counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    if (c, imb) == (100, 100):
        assert counts[:3] == [500, 477, 455] and counts[-3:] == [5, 5, 5] and counts[69] == 20
    with pytest.raises(ConfigError, match="imbalance_factor"):
        lt_counts(500, 100, 0.5)


@pytest.fixture(scope="module")
def full_labels():
    """The label layout of CIFAR-100's training file: 500 per class, shuffled (labels only)."""
    y = np.repeat(np.arange(100), 500)
    np.random.default_rng(7).shuffle(y)
    return y


def test_sampling_rules_against_naive_versions(full_labels):
    counts = lt_counts(500, 100, 100)
    # cao (LDAM-DRW): global np.random.seed(0), shuffle each class's indices, keep the first n_i
    np.random.seed(0)
    naive = []
    for c, n in enumerate(counts):
        idx = np.where(full_labels == c)[0]
        np.random.shuffle(idx)
        naive.append(idx[:n])
    cao = lt_indices(full_labels, counts, "cao", seed=123)
    assert np.array_equal(cao, np.concatenate(naive))
    assert np.array_equal(cao, lt_indices(full_labels, counts, "cao", seed=9))   # the run seed is not used
    # glmc: RandomState(seed), choice(n_class, n_i, replace=False) per class
    rs = np.random.RandomState(3407)
    naive = [np.where(full_labels == c)[0][rs.choice(500, n, replace=False)] for c, n in enumerate(counts)]
    glmc = lt_indices(full_labels, counts, "glmc", seed=3407)
    assert np.array_equal(glmc, np.concatenate(naive))
    assert not np.array_equal(glmc, lt_indices(full_labels, counts, "glmc", seed=1))
    # first: the first n_i of each class in file order
    first = lt_indices(full_labels, counts, "first")
    naive = [np.where(full_labels == c)[0][:n] for c, n in enumerate(counts)]
    assert np.array_equal(first, np.concatenate(naive))
    for keep in (cao, glmc, first):
        assert len(keep) == 10847 and len(np.unique(keep)) == 10847                # no duplicates
        assert np.bincount(full_labels[keep], minlength=100).tolist() == counts
    with pytest.raises(ConfigError, match="lt_sampling"):
        lt_indices(full_labels, counts, "cui")
    with pytest.raises(DataError, match="requested"):
        lt_indices(full_labels[:1000], counts, "cao")


@pytest.mark.parametrize("sampling", ["cao", "glmc", "first"])
def test_reader_bundle_and_batches(cifar10_dir, sampling):
    b = READERS.build("cifar10_lt", root=cifar10_dir, name="c10", seed=5, augment=True, imbalance_factor=10,
                      lt_sampling=sampling)
    expect = _naive_counts(10, 10, 10)                         # n_max = 50 images / 5 batches = 10 per class
    assert b.class_counts.tolist() == expect and len(b.train) == sum(expect)
    assert b.val is None and len(b.test) == 20 and b.spec["lt_sampling"] == sampling
    ids = [int(b.train[i]["img"].reshape(-1)[0]) * 256 + int(b.train[i]["img"].reshape(-1)[1])
           for i in range(len(b.train))]
    assert len(set(ids)) == len(ids)                                        # no image twice
    items = [b.test[i] for i in range(4)]
    batch = b.eval_collate(items)
    assert batch["x"].shape == (4, 3, 32, 32) and batch["x"].dtype == torch.float32
    assert batch["y_cs"].tolist() == [0] * 4 and batch["idx"].tolist() == [0, 1, 2, 3]
    img = torch.from_numpy(np.stack([d["img"] for d in items])).float() / 255
    ref = (img - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(batch["x"], ref)
    tr = b.train_collate([b.train[i] for i in range(4)])
    tr2 = b.train_collate([b.train[i] for i in range(4)])
    torch.testing.assert_close(tr["x"], tr2["x"])                           # seeded: same epoch, same idx
    b.train_collate.set_epoch(1)
    assert not torch.equal(b.train_collate([b.train[i] for i in range(4)])["x"], tr["x"])


def test_crop_flip_is_a_padded_crop_and_views(cifar10_dir):
    x = torch.rand(6, 3, 32, 32)
    seeds = torch.arange(6) * 7919
    out = crop_flip(x, seeds)
    xp = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(6):
        cands = [c for oy in range(9) for ox in range(9) for c in (xp[i, :, oy:oy + 32, ox:ox + 32],
                                                                   xp[i, :, oy:oy + 32, ox:ox + 32].flip(-1))]
        assert any(torch.equal(out[i], c) for c in cands)
    v = simclr_view(x, seeds)
    assert v.shape == x.shape and torch.isfinite(v).all() and v.min() >= 0 and v.max() <= 1
    torch.testing.assert_close(v, simclr_view(x, seeds))
    col = CifarCollate(True, 0, n_views=2, view_aug="simclr")
    b = READERS.build("cifar10_lt", root=cifar10_dir, name="c10", imbalance_factor=10)
    out = col([b.train[i] for i in range(4)])
    assert len(out["views"]) == 2 and not torch.equal(out["views"][0], out["views"][1])
    with pytest.raises(ConfigError, match="cifar_view_aug"):
        CifarCollate(view_aug="autoaugment")


def test_cifar100_layout_and_auto_detection(tmp_path):
    d = write_cifar100(tmp_path)
    for root in (tmp_path, d):
        assert resolve_data_source(data_dir=str(root)) == ("cifar100_lt", root)
    b = READERS.build("cifar100_lt", root=tmp_path, name="c100", imbalance_factor=3)
    assert b.class_counts.tolist() == _naive_counts(3, 100, 3) and len(b.test) == 100
    write_cifar10(tmp_path)                                                 # both folders: --dataset decides
    assert resolve_data_source(data_dir=str(tmp_path), dataset="cifar10_lt")[0] == "cifar10_lt"
    with pytest.raises(DataError, match="data_format"):
        resolve_data_source(data_dir=str(tmp_path))


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_reader_errors(tmp_path, cifar10_dir):
    with pytest.raises(DataError, match="never downloads"):
        READERS.build("cifar10_lt", root=tmp_path / "nowhere", name="x")
    d = write_cifar100(tmp_path / "a")
    (d / "test").write_bytes((d / "test").read_bytes()[:500])               # truncated
    with pytest.raises(DataError, match=r"test: not a readable CIFAR python file"):
        READERS.build("cifar100_lt", root=d, name="x")
    with open(d / "test", "wb") as fh:
        pickle.dump({b"data": _Evil(), b"fine_labels": [0]}, fh)
    with pytest.raises(DataError, match="refusing global"):
        READERS.build("cifar100_lt", root=d, name="x")
    with open(d / "test", "wb") as fh:
        pickle.dump({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, fh)   # CIFAR-10 keys
    with pytest.raises(DataError, match="fine_labels"):
        READERS.build("cifar100_lt", root=d, name="x")
    with pytest.raises(ConfigError, match="sg_count_path"):
        READERS.build("cifar10_lt", root=cifar10_dir, name="x", sg_count_path="counts.csv")


def test_resnet32_frontend():
    net = create_frontend("resnet32")
    assert sum(p.numel() for p in net.parameters()) == 463504 and net.out_dim == 64  # 0.46 M
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(net.eval()(x), net(x.reshape(2, 3, 1024)))
    torch.testing.assert_close(net(x[:, :1].expand(-1, 3, -1, -1)), net(x[:, :1].reshape(2, 1, 1024)))  # gray
    with pytest.raises(DataError, match="resnet32"):
        net(torch.randn(2, 1, 1000))


@pytest.mark.parametrize("method", ["ce", "arb", "gh"])
def test_one_epoch_on_tiny_cifar(cifar10_dir, tmp_path, method):
    res = train.main(["--dataset", "cifar10_lt", "--data_dir", str(cifar10_dir), "--imbalance_factor", "10",
                      "--frontend_type", "resnet32", "--width_mult", "0.25", "--method", method,
                      "--output_dir", str(tmp_path), "--device", "cpu", "--batch_size", "8", "--epochs", "1",
                      "--lr", "0.05", "--seed", "1", "--cifar_view_aug", "simclr"])
    run = Path(res["run_dir"])
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and np.isfinite(log[0]["train_loss"])
    test = json.loads((run / "test_metrics.json").read_text())
    assert 0 <= test["sg_top1"] <= 1 and test["cs_acc"] is None and test["n_samples"] == 20
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["model_config"]["num_classes"] == 10 and ckpt["data_spec"]["format"] == "cifar10_lt"
    assert len((run / "per_class.csv").read_text().splitlines()) == 11
