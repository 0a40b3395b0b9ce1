"""LMDB peak store: record format, round trip, multi-worker reading, corrupt/missing data."""

from __future__ import annotations

import json
import struct

import lmdb
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.peaks import PeakTable
from datasets.readers.lmdb_store import (
    LmdbPeakDataset,
    decode_record,
    encode_record,
    lmdb_to_peak_table,
    release_envs,
    write_lmdb,
)
from utils.crystal import sg_to_cs_number
from utils.errors import DataError


def _table(n=7, seed=0):
    rng = np.random.default_rng(seed)
    tts, its, sgs = [], [], []
    for i in range(n):
        k = int(rng.integers(0, 12))  # include empty peak lists
        tts.append(np.sort(rng.uniform(5, 90, k)).astype(np.float32))
        it = rng.uniform(0, 100, k).astype(np.float32)
        if k:
            it[0] = 100.0
        its.append(it)
        sgs.append([1, 2, 14, 62, 166, 194, 225, 230][i % 8])
    meta = {"formula": np.array([f"X{i}O{i + 1}" for i in range(n)]),
            "lattice": rng.uniform(3, 20, (n, 6)).astype(np.float32),
            "source": np.array([f"sim:train:{i}" for i in range(n)])}
    return PeakTable.from_lists(tts, its, sgs, 1.5406, meta)


def test_record_bytes_are_the_documented_layout():
    buf = encode_record(np.array([10.0, 20.0]), np.array([100.0, 5.0]), {"sg": 225, "formula": "NaCl"})
    assert buf[:4] == b"XRDP"
    (h,) = struct.unpack("<I", buf[4:8])
    header = json.loads(buf[8:8 + h])
    assert header == {"v": 1, "sg": 225, "formula": "NaCl", "n": 2}
    assert np.frombuffer(buf[8 + h:], "<f4").tolist() == [10.0, 20.0, 100.0, 5.0]
    tt, it, hd = decode_record(buf)
    assert tt.dtype == np.float32 and tt.tolist() == [10.0, 20.0] and it.tolist() == [100.0, 5.0]
    with pytest.raises(DataError, match="bad magic"):
        decode_record(b"PICK" + buf[4:])
    with pytest.raises(DataError, match="bytes of peaks"):
        decode_record(buf[:-4])


def test_round_trip(tmp_path):
    t = _table()
    write_lmdb(tmp_path / "train", t, meta={"split": "train"})
    ds = LmdbPeakDataset(tmp_path / "train")
    assert len(ds) == len(t) and ds.meta["split"] == "train" and ds.wavelength == 1.5406
    assert np.array_equal(ds.labels, t.sg.astype(np.int64) - 1)
    for i in range(len(t)):
        item = ds[i]
        tt, it = t.peaks(i)
        assert set(item) == {"two_theta", "intensity", "y_sg", "y_cs", "idx"}
        assert np.array_equal(item["two_theta"], tt) and np.array_equal(item["intensity"], it)
        assert item["y_sg"] == int(t.sg[i]) - 1 and item["y_cs"] == sg_to_cs_number(int(t.sg[i]))
        assert item["idx"] == i and item["two_theta"].dtype == np.float32
    back = lmdb_to_peak_table(tmp_path / "train")
    for k in ("offsets", "two_theta", "intensity", "sg"):
        assert np.array_equal(getattr(back, k), getattr(t, k)), k
    assert back.meta["formula"].tolist() == t.meta["formula"].tolist()
    assert np.array_equal(back.meta["lattice"], t.meta["lattice"])
    assert back.meta["source"].tolist() == t.meta["source"].tolist()
    # rewriting replaces the environment atomically (no stale records)
    write_lmdb(tmp_path / "train", t.subset(np.arange(3)))
    assert len(LmdbPeakDataset(tmp_path / "train")) == 3


def _collate(items):
    return {"idx": torch.tensor([d["idx"] for d in items]), "y_sg": torch.tensor([d["y_sg"] for d in items]),
            "n": torch.tensor([len(d["two_theta"]) for d in items]),
            "pid": torch.tensor([__import__("os").getpid()] * len(items))}


def test_two_dataloader_workers_read_only(tmp_path):
    t = _table(n=40, seed=1)
    write_lmdb(tmp_path / "db", t)
    ds = LmdbPeakDataset(tmp_path / "db")
    ds[0]  # the parent opens a handle first: workers must not reuse it
    dl = DataLoader(ds, batch_size=5, num_workers=2, collate_fn=_collate, shuffle=False)
    idx, ysg, n, pids = [], [], [], set()
    for b in dl:
        idx += b["idx"].tolist()
        ysg += b["y_sg"].tolist()
        n += b["n"].tolist()
        pids |= set(b["pid"].tolist())
    assert idx == list(range(40)) and ysg == (t.sg.astype(int) - 1).tolist()
    assert n == t.n_peaks().tolist() and len(pids) == 2
    # opened read-only: writing through the reader's environment is refused
    with pytest.raises(lmdb.Error):
        with ds._txn() as _:
            ds._env.begin(write=True).put(b"x", b"y")


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not found.*Fix"):
        LmdbPeakDataset(tmp_path / "nope")


def test_missing_keys(tmp_path):
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 20)
    with env.begin(write=True) as txn:
        txn.put(b"00000000", encode_record(np.zeros(1), np.ones(1), {"sg": 2}))
    env.close()
    with pytest.raises(DataError, match=r"lacks the keys \['__len__', '__meta__', '__sg__'\]"):
        LmdbPeakDataset(tmp_path / "db")


def test_missing_record_and_wrong_format(tmp_path):
    write_lmdb(tmp_path / "db", _table(n=3))
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 22)
    with env.begin(write=True) as txn:
        txn.delete(b"00000001")
    env.close()
    ds = LmdbPeakDataset(tmp_path / "db")
    ds[0]
    with pytest.raises(DataError, match="record 1 is missing"):
        ds[1]
    release_envs()  # LMDB allows one open handle per file and process
    env = lmdb.open(str(tmp_path / "db"), map_size=1 << 22)
    with env.begin(write=True) as txn:
        txn.put(b"__meta__", json.dumps({"format": "other"}).encode())
    env.close()
    with pytest.raises(DataError, match="format"):
        LmdbPeakDataset(tmp_path / "db")


def test_corrupt_file(tmp_path):
    write_lmdb(tmp_path / "db", _table(n=3))
    mdb = tmp_path / "db" / "data.mdb"
    mdb.write_bytes(b"\x00garbage" * 100)
    with pytest.raises(DataError, match="db.*Fix"):
        LmdbPeakDataset(tmp_path / "db")


def test_lmdb_reader_builds_a_bundle_like_the_peak_tables(tiny_data, tmp_path):
    """The registered "lmdb" reader renders the same eval patterns as the peak-table reader."""
    import shutil

    import torch

    from datasets import READERS
    from datasets.peaks import PeakTable
    from datasets.readers.lmdb_store import release_envs, write_lmdb

    root = tmp_path / "ds"
    shutil.copytree(tiny_data, root)
    for s in ("train", "val", "test"):
        write_lmdb(root / "lmdb" / s, PeakTable.load(root / f"peaks_{s}.npz"))
    a = READERS.build("lmdb", root=root, name="tiny", augment=False)
    b = READERS.build("peaks", root=root, name="tiny", augment=False)
    assert (a.class_counts == b.class_counts).all() and a.grid == b.grid and len(a.test) == len(b.test)
    ba = a.eval_collate([a.test[i] for i in range(5)])
    bb = b.eval_collate([b.test[i] for i in range(5)])
    torch.testing.assert_close(ba["x"], bb["x"])
    assert torch.equal(ba["y_sg"], bb["y_sg"])
    release_envs()
