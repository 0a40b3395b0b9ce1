"""Evidence bundles (indexing/bundle.py, bundle_evidence.py): the indexing results of a dataset's
fixed evaluation patterns shipped beside it, read instead of indexing them again."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

import bundle_evidence
import index_method
import indexing.patterns as patterns_mod
from indexing import bundle as bundle_mod
from indexing.bundle import BUNDLE_NAME, bundle_key, bundle_meta, load_bundle, save_bundle
from indexing.cache import code_digest
from indexing.parallel import IndexRow
from utils.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def _row(seed: int, solved: bool = True) -> IndexRow:
    rng = np.random.default_rng(seed)
    return IndexRow(rng.normal(size=110).astype(np.float32), cell=rng.uniform(3, 9, 6), volume=float(seed),
                    bravais="cF" if solved else "", crystal_system="cubic" if solved else "",
                    ext_top=(71, 3, 0), m20=12.5, f_n=30.0, zero=0.01, solved=solved, n_peaks=20 + seed,
                    message="" if solved else "too few lines", cpu_s=0.5)


def _same(a: IndexRow, b: IndexRow) -> bool:
    for f in dataclasses.fields(IndexRow):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray) or isinstance(x, float):
            if not np.allclose(x, y, equal_nan=True):
                return False
        elif x != y:
            return False
    return True


def test_round_trip_keeps_every_field(tmp_path):
    rows = [_row(1), _row(2, solved=False)]
    path = tmp_path / BUNDLE_NAME
    save_bundle(path, ["a" * 40, "b" * 40], rows, {"command": "test"})
    table = load_bundle(path)
    assert set(table) == {"a" * 40, "b" * 40}
    assert _same(table["a" * 40], rows[0]) and _same(table["b" * 40], rows[1])
    assert table["a" * 40].vector.dtype == np.float32 and table["a" * 40].ext_top == (71, 3, 0)
    meta = bundle_meta(path)
    assert meta["command"] == "test" and meta["n"] == 2 and meta["code"] == code_digest()
    with pytest.raises(ValueError, match="distinct"):
        save_bundle(path, ["a" * 40, "a" * 40], rows, {})


def test_corrupt_bundle_names_the_file_and_the_fix(tmp_path):
    path = tmp_path / BUNDLE_NAME
    path.write_bytes(b"not a zip file")
    with pytest.raises(DataError, match=f"{BUNDLE_NAME}.*bundle_evidence.py"):
        load_bundle(path)


def test_bundle_from_other_code_warns_and_misses(tmp_path, monkeypatch, warnings_):
    x = np.random.default_rng(0).random((1, 50)).astype(np.float32)
    axis, options = np.linspace(10, 60, 50), {"n_lines": 20}
    key = bundle_key(x[0], axis, 1.54, options)
    monkeypatch.setattr(bundle_mod, "code_digest", lambda: "other-code")
    monkeypatch.setattr(patterns_mod, "code_digest", lambda: "other-code")
    stale_key = bundle_key(x[0], axis, 1.54, options)
    assert stale_key != key  # the indexing code is part of the key
    path = tmp_path / BUNDLE_NAME
    save_bundle(path, [stale_key], [_row(3)], {})
    monkeypatch.undo()
    table = load_bundle(path)
    assert key not in table and any("other indexing code" in m for m in warnings_)


def test_key_survives_last_bit_noise_but_not_a_real_change():
    rng = np.random.default_rng(1)
    x = (rng.random(500) * 1000).astype(np.float32)
    axis, options = np.linspace(5, 90, 500), {"n_lines": 20}
    key = bundle_key(x, axis, 1.5406, options)
    assert bundle_key(np.nextafter(x, np.float32(np.inf)), axis, 1.5406, options) == key
    bumped = x.copy()
    bumped[100] += 5.0  # 0.5 % of the maximum
    assert bundle_key(bumped, axis, 1.5406, options) != key
    assert bundle_key(x, axis, 1.5418, options) != key


def test_index_patterns_reads_the_bundle_instead_of_indexing(tmp_path, monkeypatch):
    x = np.random.default_rng(2).random((3, 40)).astype(np.float32)
    axis, options = np.linspace(10, 60, 40), {"n_lines": 20}
    rows = [_row(10 + i) for i in range(3)]
    path = tmp_path / BUNDLE_NAME
    save_bundle(path, [bundle_key(p, axis, 1.54, options) for p in x[:2]], rows[:2], {})

    calls = []

    def fake_map(fn, items, workers, engine, progress=True):
        calls.append(len(items))
        return [rows[2] for _ in items]

    monkeypatch.setattr(patterns_mod, "parallel_map", fake_map)
    got, hits = patterns_mod.index_patterns(x, axis, 1.54, options, cache_dir=tmp_path / "cache",
                                            bundles=[path])
    assert hits == 2 and calls == [1]  # only the pattern missing from the bundle is indexed
    assert all(_same(g, r) for g, r in zip(got, rows, strict=True))
    # the bundle stays read-only; the one indexed pattern went into the per-pattern cache
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 1


def test_shipped_bundles_are_found_beside_the_data(tmp_path):
    args = argparse.Namespace(data_dir=str(tmp_path), processed_data_dir=None)
    assert index_method.shipped_bundles(args) == []
    save_bundle(tmp_path / BUNDLE_NAME, ["c" * 40], [_row(4)], {})
    assert index_method.shipped_bundles(args) == [tmp_path / BUNDLE_NAME]


@pytest.mark.slow
def test_bundle_evidence_end_to_end(make_cubic_set, tmp_path, monkeypatch, capsys):
    """bundle_evidence.py renders a set's val/test/lab patterns as a run evaluates them, bundles
    their indexing; a source with an empty cache then reads all of them from the bundle, --check
    re-indexes and agrees, and a tampered bundle fails the check."""
    data = make_cubic_set("bundle_e2e", 6, 40, 3)
    out = bundle_evidence.main(["--data_dir", str(data), "--workers", "1",
                                "--cache_dir", str(tmp_path / "c1")])
    path = data / BUNDLE_NAME
    assert out["splits"] == {"val": 2, "test": 4, "test_lab": 4} and out["n"] == 10
    assert bundle_meta(path)["solved"] == out["solved"] > 0

    xs, grid, _ = bundle_evidence.split_patterns(argparse.Namespace(ckpt=str(bundle_evidence.SHIPPED),
                                                                   data_dir=str(data)))
    source = index_method.PatternEvidenceSource(grid, 1, cache_dir=tmp_path / "c2",
                                                bundles=index_method.shipped_bundles(
                                                    argparse.Namespace(data_dir=str(data))))
    monkeypatch.setattr(patterns_mod, "parallel_map", lambda *a, **k: pytest.fail("indexed again"))
    for name, x in xs.items():
        ev = source(x, name)
        assert ev.shape == (len(x), 110) and np.isfinite(ev).all()
    monkeypatch.undo()
    assert bundle_evidence.main(["--data_dir", str(data), "--check", "2"])["checked"] == 6

    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["evidence"] = arrays["evidence"] + 1.0
    np.savez_compressed(path, **arrays)
    with pytest.raises(DataError, match="differ from the bundle"):
        bundle_evidence.main(["--data_dir", str(data), "--check", "1"])
    json.dumps(out)  # the command prints it


SHIPPED = {"xrd_mp_default": {"val": 450, "test": 900, "test_lab": 900},
           "external_pyxtal": {"test": 89, "test_lab": 89}}


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_bundles_are_current(name):
    """The bundles shipped with the built-in benchmark and the real crystals were written by this
    indexing code (else every new machine indexes their patterns again, ~23 min on 2 cores for the
    benchmark, and the README's time is false)."""
    path = ROOT / "data" / name / BUNDLE_NAME
    meta = bundle_meta(path)
    assert meta["code"] == code_digest(), (
        f"{path} is from other indexing code. Fix: python bundle_evidence.py --data_dir data/{name} "
        "(the per-pattern cache makes it fast on a machine that already indexed them)")
    assert meta["splits"] == SHIPPED[name] and meta["data_dir"] == f"data/{name}"
    assert path.stat().st_size < 3 * 2 ** 20
    rows = load_bundle(path)  # readable by this code's loader, every row a full evidence vector
    assert len(rows) == meta["n"] >= 0.95 * sum(SHIPPED[name].values())
    assert sum(r.solved for r in rows.values()) == meta["solved"]
    assert all(r.vector.shape == (110,) and np.isfinite(r.vector).all() for r in rows.values())
