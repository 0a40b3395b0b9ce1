"""``indexing.cache`` (evidence of a peaks file, computed once and cached: hit, miss, corruption,
changed settings / data / code version) and ``indexing.parallel`` (local processes and Ray give
the single-process rows, in order)."""

from __future__ import annotations

import itertools
from dataclasses import fields

import numpy as np
import pytest
from loguru import logger

import indexing.cache as cache
from indexing.api import EVIDENCE_DIM
from indexing.cache import IndexTable, evidence_for_file, read_peaks_file
from indexing.parallel import IndexRow, index_many
from utils.errors import DataError
from utils.lattice import inv_d2

WAVELENGTH = 1.5406
# primitive cells of the fast (uniaxial and cubic) systems: (a, b, c, α, β, γ)
CELLS = [(4.05, 4.05, 4.05, 90, 90, 90), (6.31, 6.31, 6.31, 90, 90, 90), (4.61, 4.61, 3.02, 90, 90, 90),
         (5.42, 5.42, 7.93, 90, 90, 90), (3.21, 3.21, 5.21, 90, 90, 120), (6.02, 6.02, 4.11, 90, 90, 120),
         (4.92, 4.92, 9.71, 90, 90, 120), (5.05, 5.05, 12.6, 90, 90, 90)]


def _sticks(cell, rng, tt_max: float = 90.0):
    r = range(-6, 7)
    hkl = np.array([h for h in itertools.product(r, r, r) if any(h)])
    q = np.round(inv_d2(hkl, np.asarray(cell, float)), 10)
    q_uni, mult = np.unique(q, return_counts=True)
    s = WAVELENGTH * np.sqrt(q_uni) / 2
    keep = s < np.sin(np.radians(tt_max / 2))
    tt = np.degrees(2 * np.arcsin(s[keep]))
    return tt, mult[keep] * rng.uniform(0.05, 1.0, keep.sum())


def write_peaks_file(path, cells=CELLS, seed=0):
    """A peaks file in the simulator's format, from stick lists of ``cells``."""
    rng = np.random.default_rng(seed)
    sticks = [_sticks(c, rng) for c in cells]
    np.savez(path, offsets=np.r_[0, np.cumsum([len(t) for t, _ in sticks])],
             two_theta=np.concatenate([t for t, _ in sticks]).astype(np.float32),
             intensity=np.concatenate([i for _, i in sticks]).astype(np.float32),
             wavelength=np.float64(WAVELENGTH), sg=np.arange(1, len(cells) + 1, dtype=np.int16))
    return path


@pytest.fixture
def log():
    lines: list[str] = []
    sink = logger.add(lambda m: lines.append(str(m)), level="INFO", format="{message}")
    yield lines
    logger.remove(sink)


def _same(a: IndexTable, b: IndexTable) -> None:
    for f in fields(IndexTable):
        if f.name != "cpu_s":  # measured time: the only column that differs between runs
            np.testing.assert_array_equal(getattr(a, f.name), getattr(b, f.name), err_msg=f.name)


def test_miss_then_hit_and_what_is_stored(tmp_path, monkeypatch, log):
    data = write_peaks_file(tmp_path / "peaks_test.npz", CELLS[:3])
    d = tmp_path / "cache"
    t1 = evidence_for_file(data, cache_dir=d, progress=False)
    files = list(d.iterdir())
    assert len(files) == 1 and files[0].name.startswith(f"{tmp_path.name}_peaks_test_")  # no temp left
    assert t1.evidence.shape == (3, EVIDENCE_DIM) and t1.evidence.dtype == np.float32
    assert t1.solved.all() and list(t1.sg) == [1, 2, 3]
    assert list(t1.bravais) == ["cP", "cP", "tP"] and t1.crystal_system[2] == "tetragonal"
    np.testing.assert_allclose(t1.cell[:, 0], [4.05, 6.31, 4.61], atol=2e-3)
    assert (t1.ext_top[:, 0] > 0).all() and (t1.m20 > 10).all()

    def boom(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(cache, "index_many", boom)
    _same(evidence_for_file(data, cache_dir=d, progress=False), t1)
    np.testing.assert_array_equal(evidence_for_file(data, cache_dir=d).cpu_s, t1.cpu_s)
    assert any("from the cache" in ln for ln in log)


def test_key_changes_with_settings_data_limit_and_version(tmp_path, monkeypatch):
    data = write_peaks_file(tmp_path / "peaks_val.npz", CELLS[:2])
    d = tmp_path / "cache"
    evidence_for_file(data, cache_dir=d, progress=False)
    evidence_for_file(data, cache_dir=d, settings={"n_lines": 15}, progress=False)
    evidence_for_file(data, cache_dir=d, limit=1, progress=False)
    monkeypatch.setattr(cache, "INDEX_CACHE_VERSION", cache.INDEX_CACHE_VERSION + 1)
    t = evidence_for_file(data, cache_dir=d, progress=False)
    monkeypatch.setattr(cache, "code_digest", lambda: "edited-search-py")  # the indexing code changed
    evidence_for_file(data, cache_dir=d, progress=False)
    write_peaks_file(data, CELLS[:2], seed=1)  # same name, other intensities
    evidence_for_file(data, cache_dir=d, progress=False)
    assert len(list(d.glob("*.npz"))) == 6 and len(t) == 2
    with pytest.raises(ValueError, match="unknown indexing settings"):
        evidence_for_file(data, cache_dir=d, settings={"n_line": 15})
    with pytest.raises(ValueError, match="source"):
        evidence_for_file(data, cache_dir=d, source="lab")


def test_corrupt_cache_is_reported_and_recomputed(tmp_path, log):
    data = write_peaks_file(tmp_path / "peaks_test.npz", CELLS[4:6])
    d = tmp_path / "cache"
    t1 = evidence_for_file(data, cache_dir=d, progress=False)
    (p,) = d.glob("*.npz")
    for garbage in (b"not a zip at all", p.read_bytes()[: p.stat().st_size // 2]):
        p.write_bytes(garbage)
        log.clear()
        t2 = evidence_for_file(data, cache_dir=d, progress=False)
        assert any("unreadable index cache" in ln and "recomputing" in ln for ln in log), log
        _same(t1, t2)
        stored = {k: v for k, v in np.load(p).items() if k not in ("key", "settings")}
        _same(IndexTable.from_arrays(stored), t1)  # rewritten, readable


def test_bad_peaks_file_names_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.npz: peaks file not found"):
        evidence_for_file(tmp_path / "missing.npz", cache_dir=tmp_path)
    bad = tmp_path / "bad.npz"
    np.savez(bad, offsets=np.array([0, 5]), two_theta=np.ones(3), intensity=np.ones(3), wavelength=1.5)
    with pytest.raises(DataError, match="bad.npz: offsets do not partition"):
        read_peaks_file(bad)
    np.savez(bad, offsets=np.array([0, 3]), two_theta=np.ones(3))
    with pytest.raises(DataError, match="bad.npz: no array"):
        read_peaks_file(bad)


def _rows_equal(a: list[IndexRow], b: list[IndexRow]) -> None:
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        for f in fields(IndexRow):
            if f.name != "cpu_s":
                np.testing.assert_array_equal(getattr(x, f.name), getattr(y, f.name), err_msg=f"{i} {f.name}")


@pytest.fixture(scope="module")
def peak_lists(tmp_path_factory):
    path = write_peaks_file(tmp_path_factory.mktemp("par") / "peaks_test.npz")
    return read_peaks_file(path)[0]


def test_local_workers_match_one_process_in_order(peak_lists):
    serial = index_many(peak_lists, progress=False)
    assert [r.bravais for r in serial] == ["cP"] * 2 + ["tP"] * 2 + ["hP"] * 3 + ["tP"]
    _rows_equal(index_many(peak_lists, workers=2, chunk_size=3, progress=False), serial)


def test_bad_engine_and_workers(peak_lists):
    with pytest.raises(ValueError, match="engine"):
        index_many(peak_lists, engine="dask")
    with pytest.raises(ValueError, match="workers"):
        index_many(peak_lists, workers=0)


@pytest.mark.slow
def test_ray_matches_one_process(peak_lists):
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install ray)")
    serial = index_many(peak_lists[:4], progress=False)
    _rows_equal(index_many(peak_lists[:4], workers=2, engine="ray", chunk_size=1, progress=False), serial)
    assert not ray.is_initialized()  # the instance it started is shut down


def test_code_digest_ignores_comments_and_docstrings_only(tmp_path):
    src = '''"""Doc."""\n\ndef f(x):\n    """Doc."""\n    return x * 2  # why\n'''
    a, b, c = tmp_path / "a.py", tmp_path / "b.py", tmp_path / "c.py"
    a.write_text(src)
    b.write_text(src.replace("Doc.", "Other words.").replace("# why", "# because"))
    c.write_text(src.replace("x * 2", "x * 3"))
    assert cache._code_text(a) == cache._code_text(b) != cache._code_text(c)
    assert len(cache.code_digest()) == 16


def test_code_digest_is_the_loaded_codes_not_the_files_now(tmp_path, monkeypatch):
    """Taken at import: files changed under a running process do not change its keys."""
    before = cache.code_digest()
    (tmp_path / "indexing").mkdir()
    (tmp_path / "indexing" / "new_module.py").write_text("x = 1\n")
    monkeypatch.setattr(cache, "_ROOT", tmp_path)
    assert cache.code_digest() == before
    cache.code_digest.cache_clear()
    try:
        assert cache.code_digest() != before  # what a process started now would take
    finally:
        monkeypatch.undo()
        cache.code_digest.cache_clear()
    assert cache.code_digest() == before
