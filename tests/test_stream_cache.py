"""The stream's epoch cache (``--stream_cache``, datasets.synthesis.stream_cache): a run that writes
it and a run that reads it yield the very items of a run without it; the key follows the inputs;
a bad file is reported and regenerated; a resumed run loads the cached epoch directly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from loguru import logger

from datasets.peaks import PeakTable
from datasets.synthesis.stream import StructureStream
from datasets.synthesis.stream_cache import STREAM_CACHE_VERSION, cache_key
from datasets.synthesis.structures import mp_table_path

GROUPS = [2, 14, 225]  # quick to generate
INLINE = {"workers": 1, "inline": True}  # jobs in this process: no worker start-up


def _stream(cache=None, n: int = 4, seed: int = 5, epochs: int = 3, reuse: int = 2, **kw) -> StructureStream:
    cache = None if cache is None else str(cache)
    return StructureStream(mp_table_path(), n_structures=n, reuse=reuse, seed=seed, groups=GROUPS,
                           epochs=epochs, engine_kwargs=INLINE, progress=False, cache_dir=cache, **kw)


def _items(s: StructureStream, epochs=(0, 1, 2)) -> list[list[dict]]:
    out = []
    for e in epochs:
        s.set_epoch(e)
        out.append([s[k] for k in range(len(s))])
    s.close()
    return out


def _same(a: list[list[dict]], b: list[list[dict]]) -> bool:
    """Bitwise equality of item lists (values, dtypes, shapes)."""
    for ea, eb in zip(a, b, strict=True):
        for x, y in zip(ea, eb, strict=True):
            if x.keys() != y.keys():
                return False
            for k in x:
                u, v = np.asarray(x[k]), np.asarray(y[k])
                if u.dtype != v.dtype or u.shape != v.shape or u.tobytes() != v.tobytes():
                    return False
    return True


class FailSlot:
    """Slot 0 fails in every epoch >= 1 (keeps its previous crystal)."""

    def __init__(self, n: int) -> None:
        from datasets.synthesis.jobs import JobRunner
        from datasets.synthesis.stream import StreamJob

        opts = {"tol_factor": 0.9, "volume_factor": 1.2, "wavelength": 1.5406, "two_theta_range": (5.0, 90.0),
                "min_intensity": 0.5}
        self.n, self.inner = n, StreamJob(JobRunner(mp_table_path(), opts), 1.5406, 90.0)

    def __call__(self, job):
        out = self.inner(job)
        if job.index >= self.n and job.index % self.n == 0:
            out["ok"] = False
        return out


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Items of epochs 0-2 without a cache, and a cache written by a run of the same stream."""
    cache = tmp_path_factory.mktemp("stream_cache")
    plain = _items(_stream())
    writer = _stream(cache)
    written = _items(writer)
    return {"cache": cache, "dir": writer.cache.dir, "plain": plain, "written": written}


def _warnings() -> tuple[list[str], int]:
    msgs: list[str] = []
    return msgs, logger.add(lambda m: msgs.append(m.record["message"]), level="WARNING")


def test_write_then_read_gives_the_same_items(reference):
    d = reference["dir"]
    assert sorted(p.name for p in d.iterdir()) == ["epoch_0.npz", "epoch_1.npz", "epoch_2.npz", "key.json"]
    assert _same(reference["written"], reference["plain"])
    reader = _stream(reference["cache"])
    read = _items(reader)
    assert reader.stats["generated"] == 0 and reader.stats["cached"] == 3
    assert _same(read, reference["plain"])


def test_key_follows_the_inputs_but_not_reuse(reference):
    s = _stream(reference["cache"], epochs=1)
    assert s.cache.dir == reference["dir"] and s.stats["cached"] == 1  # same inputs: same folder
    inputs = s.cache.inputs
    assert inputs["version"] == STREAM_CACHE_VERSION and "reuse" not in inputs
    r = _stream(reference["cache"], epochs=1, reuse=3)
    assert r.cache.dir == reference["dir"] and r.stats["generated"] == 0  # --stream_reuse shows, not makes
    keys = {cache_key(inputs), cache_key({**inputs, "seed": 6}), cache_key({**inputs, "profile": "balanced"}),
            cache_key({**inputs, "version": STREAM_CACHE_VERSION + 1})}
    assert len(keys) == 4
    b = _stream(reference["cache"], seed=6, epochs=1, profile="balanced")  # wired through the stream
    assert b.cache.dir.parent == reference["dir"].parent and b.cache.dir != reference["dir"]
    assert b.stats["generated"] == 4 and (b.cache.dir / "epoch_0.npz").is_file()


def test_bad_cache_file_is_reported_and_replaced(reference, tmp_path):
    cache = tmp_path / "c"
    shutil.copytree(reference["cache"], cache)
    d = cache / reference["dir"].name
    good = (d / "epoch_1.npz").read_bytes()
    (d / "epoch_1.npz").write_bytes(good[: len(good) // 2])  # truncated
    (d / "epoch_2.npz").write_bytes(b"not a zip file")  # garbage
    msgs, sink = _warnings()
    try:
        s = _stream(cache)
        items = _items(s)
    finally:
        logger.remove(sink)
    for e in (1, 2):
        assert any(f"epoch_{e}.npz" in m and "regenerating" in m for m in msgs), msgs
        assert s.epoch_stats[e]["generated"] == 4 and s.epoch_stats[e]["cached"] == 0
        assert len(PeakTable.load(d / f"epoch_{e}.npz")) == 4  # replaced by a good file
    assert s.epoch_stats[0]["cached"] == 1
    assert _same(items, reference["plain"])
    assert not list(d.glob(".*tmp*"))  # no temp files left


def test_resume_loads_the_cached_epoch(reference):
    s = _stream(reference["cache"])
    s.set_epoch(2)  # --resume at epoch 2: epoch 0 at construction, then 2, never 1
    items = [s[k] for k in range(len(s))]
    s.close()
    assert s.stats["generated"] == 0 and set(s.epoch_stats) == {0, 2} and s.epoch_stats[2]["cached"] == 1
    assert _same([items], reference["plain"][2:])


@pytest.mark.slow
def test_resumed_epoch_with_fallbacks_is_not_cached(tmp_path):
    """A resumed run generates epoch 2 from epoch 0 (as without a cache): its fallback slot holds
    epoch 0's crystal, not epoch 1's, so that table is not written; an uninterrupted run's is."""
    resumed = _stream(tmp_path, job_fn=FailSlot(4), max_tries=1)
    resumed.set_epoch(2)
    resumed.close()
    assert resumed.epoch_stats[2]["fallback"] == 1
    assert not resumed.cache.path(2).exists() and resumed.cache.path(0).exists()
    plain = _items(_stream(job_fn=FailSlot(4), max_tries=1))
    written = _items(_stream(tmp_path, job_fn=FailSlot(4), max_tries=1))
    read = _items(_stream(tmp_path, job_fn=FailSlot(4), max_tries=1))
    assert _same(written, plain) and _same(read, plain)
