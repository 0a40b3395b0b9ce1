"""On-the-fly training crystals (datasets.synthesis.stream): new structures every epoch with fixed
labels, determinism, crashed workers and failed slots, and a train.py run on the stream."""

from __future__ import annotations

import hashlib
import os
import pickle
import time
from pathlib import Path

import numpy as np
import pytest

from datasets.synthesis.jobs import JobRunner
from datasets.synthesis.plan import group_totals, load_mp_table
from datasets.synthesis.stream import StreamJob, StructureStream, slot_groups
from datasets.synthesis.structures import mp_table_path
from tests.conftest import tiny_args

GROUPS = [2, 14, 225]  # triclinic, monoclinic, cubic: quick to generate
OPTS = {"tol_factor": 0.9, "volume_factor": 1.2, "wavelength": 1.5406, "two_theta_range": (5.0, 90.0),
        "min_intensity": 0.5}


def _stream(n: int = 8, seed: int = 5, **kw) -> StructureStream:
    return StructureStream(mp_table_path(), n_structures=n, reuse=2, seed=seed, groups=GROUPS, progress=False,
                           **kw)


def _crystals(stream: StructureStream) -> list[tuple]:
    t = stream.table
    return [(str(t.meta["formula"][i]), tuple(np.round(t.structures.cell[i], 4))) for i in range(len(t))]


def _checksum(stream: StructureStream) -> str:
    t, h = stream.table, hashlib.sha256()
    for a in (t.sg, t.two_theta, t.intensity, t.structures.cell, t.structures.frac, t.families.hkl):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def _job_fn() -> StreamJob:
    return StreamJob(JobRunner(mp_table_path(), OPTS), OPTS["wavelength"], OPTS["two_theta_range"][1])


class CrashOnce:
    """Kills its worker process (os._exit) the first time any job runs, then behaves."""

    def __init__(self, inner: StreamJob, marker: str) -> None:
        self.inner, self.marker = inner, marker

    def __call__(self, job):
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            os._exit(1)
        except FileExistsError:
            return self.inner(job)


class HangOnce:
    """The first job run sleeps far past the engine's job timeout (a hung worker), then behaves."""

    def __init__(self, inner: StreamJob, marker: str) -> None:
        self.inner, self.marker = inner, marker

    def __call__(self, job):
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            time.sleep(600)
        except FileExistsError:
            pass
        return self.inner(job)


class FailSlot:
    """Slot ``slot`` fails (ok False) in every epoch >= 1: it must keep its epoch-0 crystal."""

    def __init__(self, inner: StreamJob, n: int, slot: int) -> None:
        self.inner, self.n, self.slot = inner, n, slot

    def __call__(self, job):
        out = self.inner(job)
        if job.index >= self.n and job.index % self.n == self.slot:
            out["ok"] = False
        return out


def test_slot_groups_follow_the_profile():
    totals = group_totals(load_mp_table(mp_table_path()))
    mp = slot_groups(totals, 2000, "mp", 0)
    present = np.flatnonzero(totals[1:] > 0) + 1
    assert len(mp) == 2000 and set(mp) == set(present)  # exact total, every present group at least once
    c = np.bincount(mp, minlength=231)
    assert c[225] > c[2] > c[230] >= 1  # Fm-3m (most common in MP) > P-1 > Ia-3d
    bal = np.bincount(slot_groups(totals, 2 * len(present) + 3, "balanced", 0), minlength=231)[present]
    assert bal.min() == 2 and bal.max() == 3 and bal.sum() == 2 * len(present) + 3
    few = slot_groups(totals, 8, "mp", 0)
    assert len(few) == 8 and len(set(few)) == 8  # fewer slots than groups: distinct groups


def test_epochs_see_new_crystals_with_the_same_labels():
    s = _stream(epochs=2)
    assert len(s) == 16 and s.labels.tolist() == np.tile(s.slot_sg - 1, 2).tolist()
    first, labels0 = _crystals(s), s.table.sg.copy()
    item = s[9]  # slot 1, second reuse: same crystal, own idx, carries its families
    assert item["idx"] == 9 and item["y_sg"] == s.slot_sg[1] - 1 and item["hkl"].shape[1] == 3
    s.set_epoch(0)
    s.set_epoch(1)
    second = _crystals(s)
    assert np.array_equal(s.table.sg, labels0) and np.array_equal(labels0, s.slot_sg)
    assert not set(first) & set(second)  # disjoint structures
    st = s.stats
    assert st["generated"] == 16 and st["fallback"] == 0 and set(s.epoch_stats) == {0, 1}
    copy = pickle.loads(pickle.dumps(s))  # what a spawned DataLoader worker gets: the table only
    assert copy._thread is None and _crystals(copy) == second and copy[3]["idx"] == 3
    s.close()


def test_same_seed_same_crystals():
    a, b = _stream(n=6, seed=11, epochs=1), _stream(n=6, seed=11, epochs=1)
    assert _checksum(a) == _checksum(b)
    c = _stream(n=6, seed=12, epochs=1)
    assert _checksum(c) != _checksum(a)


@pytest.mark.slow
def test_crashed_worker_and_failed_slot(tmp_path):
    # a worker dies mid-generation: it is replaced and every slot is filled
    s = _stream(n=6, epochs=1, job_fn=CrashOnce(_job_fn(), str(tmp_path / "crashed")))
    assert (tmp_path / "crashed").exists()
    assert s.stats["crashed_workers"] >= 1 and s.stats["generated"] == 6 and len(s.table) == 6
    # a hung job is failed by the engine's timeout and its slot retried with another seed
    kw = {"workers": 1, "inline": False, "job_timeout_s": 3.0, "poll_s": 0.2}
    s = _stream(n=4, epochs=1, engine_kwargs=kw, job_fn=HangOnce(_job_fn(), str(tmp_path / "hung")))
    assert s.stats["hung"] == 1 and s.stats["retried"] == 1 and s.stats["generated"] == 4
    # a slot failing every try keeps its previous crystal (and its label)
    s = _stream(n=6, epochs=2, max_tries=2, job_fn=FailSlot(_job_fn(), 6, slot=0))
    before = _crystals(s)
    s.set_epoch(0)
    s.set_epoch(1)
    after = _crystals(s)
    assert after[0] == before[0] and not set(after[1:]) & set(before)
    assert s.table.sg[0] == s.slot_sg[0]
    e1 = s.epoch_stats[1]
    assert e1["fallback"] == 1 and e1["retried"] == 1 and e1["failed"] == 2 and e1["generated"] == 5


@pytest.mark.slow
def test_train_on_the_stream(tiny_data, tmp_path, capfd):
    import train

    res = train.main(tiny_args(tiny_data, tmp_path / "Log", "--epochs", "2", "--method", "ce",
                               "--data_source", "stream", "--stream_structures", "8", "--stream_reuse", "2",
                               "--save_log=True"))
    # epoch 0 is generated before the run directory exists (console only); epoch 1 in train.log
    assert "stream epoch 0: 8 crystals (generated in" in capfd.readouterr().err
    log = (Path(res["run_dir"]) / "train.log").read_text()
    assert "stream epoch 1: 8 crystals (training waited" in log and "crashed workers 0" in log
    assert "sg_top1" in res["test"]


@pytest.mark.slow
def test_resume_regenerates_the_same_epoch():
    a = _stream(n=4, seed=7, epochs=3)
    for e in range(3):
        a.set_epoch(e)
    b = _stream(n=4, seed=7, epochs=3)
    b.set_epoch(2)  # --resume auto at epoch 2: generated directly, no prefetch of 1
    assert _checksum(a) == _checksum(b) and b.epoch == 2


def test_stream_on_a_dataset_of_fixed_patterns_is_a_clear_error(tmp_path):
    """The quick preset sets --data_source stream; with `--config quick` on a user's NPY patterns
    (no peak lists to render crystals like) the run stops at once, naming the data and the fix."""
    import train
    from datasets.readers.npy_format import split_path, write_dataset_json, write_npy
    from utils.errors import ConfigError
    from utils.grid import GridSpec

    x = np.random.default_rng(0).uniform(0, 1, (8, 256)).astype(np.float32)
    sg = np.repeat([1, 225], 4)
    root = tmp_path / "npy"
    write_npy(split_path(root, "toy", "train"), x, sg)
    write_npy(split_path(root, "toy", "test"), x, sg)
    write_dataset_json(root, "toy", GridSpec(5.0, 90.0, 256, 1.5406))
    with pytest.raises(ConfigError, match="'npy' dataset. Fix: --data_source files"):
        train.main(["--config", "quick", "--use_processed_npy", "--processed_data_dir", str(root),
                    "--dataset", "toy", "--output_dir", str(tmp_path / "Log"), "--device", "cpu"])
