"""Property-based bad input for the data readers (NPY, LMDB, ``.xy``, peak tables; raw CSV/CIF in
test_fuzz_raw_csv.py).

Every reader gets (a) random bytes and (b) structurally plausible but wrong content. The property:
it either returns a result that passes the documented checks (shapes, dtypes, finite values,
labels in 1..230), or raises the framework's ``DataError`` — never another exception type, a
crash or a silently wrong result. Inputs are tiny, so no example can hang.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasets.peaks import PeakTable
from datasets.readers.lmdb_store import (
    LmdbPeakDataset,
    encode_record,
    lmdb_to_peak_table,
    release_envs,
    write_lmdb,
)
from datasets.readers.npy import NpyDataset, build_npy, read_sg_count
from datasets.readers.npy_format import read_npy, split_path, write_dataset_json, write_npy
from datasets.readers.xy_patterns import pattern_on_grid, read_xy
from utils.crystal import SG_TO_CS
from utils.errors import DataError
from utils.grid import GridSpec

# XRD_FUZZ_EXAMPLES=N runs N random examples per test (a longer hunt); by default a fixed, fast set.
_HUNT = int(os.environ.get("XRD_FUZZ_EXAMPLES", "0"))


def fuzz(n: int = 40, **kw) -> settings:
    return settings(max_examples=_HUNT or n, deadline=None, derandomize=not _HUNT,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture], **kw)


FUZZ = fuzz()
L = 16
GRID = GridSpec(5.0, 90.0, L, 1.5406)
random_bytes = st.binary(min_size=0, max_size=600)
odd_floats = st.sampled_from([0.0, 1.0, -1.0, 100.0, np.nan, np.inf, -np.inf, 1e39, 5e-324])


@contextmanager
def tmpdir():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def expect_data_error(fn, *args, **kwargs):
    """Run ``fn``; return its result, or None when it raised DataError (any other type fails)."""
    try:
        return fn(*args, **kwargs)
    except DataError as exc:
        assert "Fix:" in str(exc), exc  # documented errors always say how to fix them
        return None


# ------------------------------------------------------------------------------------------ NPY

def check_npy(arr, path, n_points=None):
    """A successfully read split is exactly what read_npy documents."""
    assert arr.ndim == 1 and {"intensitys", "labels230", "labels7"} <= set(arr.dtype.names)
    x = np.asarray(arr["intensitys"], dtype=np.float64)
    x = x.reshape(len(arr), -1 if len(arr) else arr.dtype["intensitys"].shape[0])
    assert np.isfinite(x).all()
    if n_points is not None:
        assert x.shape[1] == n_points
    sg = np.asarray(arr["labels230"]).astype(np.int64)
    assert ((sg >= 1) & (sg <= 230)).all()
    assert (np.asarray(arr["labels7"]).astype(np.int64) == SG_TO_CS[sg - 1]).all()
    ds = NpyDataset(path, n_points=n_points)
    for i in range(len(ds)):
        item = ds[i]
        assert item["x"].dtype.is_floating_point and item["x"].shape == (1, x.shape[1])
        assert 0 <= item["y_sg"] < 230 and 0 <= item["y_cs"] < 7


@FUZZ
@given(random_bytes, st.sampled_from([b"", b"\x93NUMPY\x01\x00", b"\x93NUMPY\x02\x00", b"\x80\x04"]))
def test_npy_random_bytes(data, prefix):
    with tmpdir() as d:
        p = d / "a.npy"
        p.write_bytes(prefix + data)
        arr = expect_data_error(read_npy, p)
        if arr is not None:
            check_npy(arr, p)


@st.composite
def npy_arrays(draw):
    """Arrays with valid NPY headers and wrong dtypes / shapes / values / labels."""
    n = draw(st.integers(0, 5))
    if draw(st.integers(0, 5)) == 0:  # a plain (non-structured) array
        shape = draw(st.sampled_from([(n,), (n, L), (n, L, 1), ()]))
        return np.zeros(shape, dtype=draw(st.sampled_from(["<f4", "<i2", "|u1", "<c8", "|b1"])))
    int_shape = draw(st.sampled_from([(L,), (L,), (L + 1,), (L, 2), (), (0,)]))
    fields = [("intensitys", draw(st.sampled_from(["<f4", ">f4", "<f2", "<f8", "<i4", "|u1"])), int_shape),
              ("labels230", draw(st.sampled_from(["<i2", "<i2", "<u1", "<i8", "<u8", "<f4", "|b1"])), ()),
              ("labels7", draw(st.sampled_from(["<i1", "<i1", "<i2", "<f4"])), ())]
    if draw(st.booleans()) and draw(st.booleans()):
        del fields[draw(st.integers(0, 2))]
    if draw(st.booleans()):
        fields.append(("extra", "<f4", ()))
    dt = np.dtype(fields)
    shape = (n,) if draw(st.integers(0, 6)) else (n, 2)
    a = np.zeros(shape, dtype=dt)
    flat = a.reshape(-1)
    for i in range(flat.size):
        if "intensitys" in dt.names and flat["intensitys"][i].size:
            v = flat["intensitys"][i].reshape(-1)
            v[:] = draw(st.sampled_from([0.5, 1.0, 0.0]))
            if draw(st.integers(0, 4)) == 0:
                with np.errstate(all="ignore"):  # e.g. NaN into an integer field: whatever it becomes
                    v[draw(st.integers(0, v.size - 1))] = np.array(draw(odd_floats)).astype(v.dtype)
        sg = draw(st.one_of(st.integers(1, 230), st.integers(-300, 70000)))
        if "labels230" in dt.names:
            with np.errstate(all="ignore"):
                flat["labels230"][i] = np.array(sg).astype(dt["labels230"])
        if "labels7" in dt.names:
            ok_cs = SG_TO_CS[min(max(sg, 1), 230) - 1]
            flat["labels7"][i] = ok_cs if draw(st.integers(0, 3)) else draw(st.integers(-2, 9))
    return a


@FUZZ
@given(npy_arrays(), st.booleans(), st.data())
def test_npy_plausible_but_wrong(a, grid_check, data):
    with tmpdir() as d:
        p = d / "a.npy"
        np.save(p, a, allow_pickle=False)
        if data.draw(st.integers(0, 3)) == 0:  # truncated at a random offset
            raw = p.read_bytes()
            p.write_bytes(raw[: data.draw(st.integers(0, max(len(raw) - 1, 0)))])
        n_points = L if grid_check else None
        arr = expect_data_error(read_npy, p, n_points=n_points)
        if arr is not None:
            check_npy(arr, p, n_points)
            del arr


def test_npy_pickled_object_array_is_refused():
    with tmpdir() as d:
        p = d / "a.npy"
        np.save(p, np.array([{"x": 1}], dtype=object), allow_pickle=True)
        with pytest.raises(DataError, match="Python objects"):
            read_npy(p)


_JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.sampled_from(
    [1.5406, 0.0, -1.0, float("nan"), float("inf"), 8500, 16, 5.0, 90.0]), st.text(max_size=5),
    st.lists(st.integers(0, 3), max_size=2))


@FUZZ
@given(st.one_of(random_bytes.map(lambda b: b.decode("latin-1")),
                 st.dictionaries(st.sampled_from(["grid", "intensity_scale", "name", "format"]),
                                 st.one_of(_JSON_VALUES, st.dictionaries(st.sampled_from(
                                     ["two_theta_min", "two_theta_max", "n_points", "wavelength"]),
                                     _JSON_VALUES, max_size=4)), max_size=4).map(json.dumps)),
       st.text(alphabet="0123456789,-\n x#", max_size=40))
def test_npy_folder_with_bad_dataset_json_and_counts(meta, counts):
    """build_npy on a valid split but a random dataset.json and sg_count.csv."""
    with tmpdir() as d:
        x = np.full((3, L), 0.5, np.float32)
        for s in ("train", "test"):
            write_npy(split_path(d, "toy", s), x, np.array([1, 14, 225]))
        (d / "dataset.json").write_text(meta)
        (d / "sg_count.csv").write_text(counts)
        bundle = expect_data_error(build_npy, d, "toy")
        if bundle is not None:
            g = bundle.grid
            assert g.n_points == L and np.isfinite([g.two_theta_min, g.two_theta_max, g.wavelength]).all()
            assert g.two_theta_max > g.two_theta_min and g.wavelength > 0
            assert bundle.class_counts.shape == (230,) and (bundle.class_counts >= 0).all()
            assert np.isfinite(bundle.train[0]["x"].numpy()).all()
        got = expect_data_error(read_sg_count, d / "sg_count.csv")
        if got is not None:
            assert got.shape == (230,) and got.dtype == np.int64 and (got >= 0).all()


def test_npy_dataset_json_with_non_finite_grid_is_refused():
    """Trigger of a fixed bug: a NaN wavelength passed the `<= 0` check."""
    with tmpdir() as d:
        write_dataset_json(d, "toy", GRID)
        meta = json.loads((d / "dataset.json").read_text())
        meta["grid"]["wavelength"] = float("nan")
        (d / "dataset.json").write_text(json.dumps(meta))
        x = np.ones((2, L), np.float32)
        for s in ("train", "test"):
            write_npy(split_path(d, "toy", s), x, np.array([1, 2]))
        with pytest.raises(DataError, match="invalid grid"):
            build_npy(d, "toy")


# ----------------------------------------------------------------------------------------- LMDB

def _peaks(n=3):
    return PeakTable.from_lists([np.array([10.0, 20.0 + i], np.float32) for i in range(n)],
                                [np.array([100.0, 50.0], np.float32)] * n, [1 + 7 * i for i in range(n)],
                                meta={"formula": [f"X{i}" for i in range(n)]})


def check_lmdb(path):
    ds = expect_data_error(LmdbPeakDataset, path)
    if ds is None:
        return
    assert len(ds) == len(ds.sg) and np.isfinite(ds.wavelength) and ds.wavelength > 0
    for i in range(len(ds)):
        item = expect_data_error(ds.__getitem__, i)
        if item is None:
            continue
        assert item["two_theta"].dtype == np.float32 and item["two_theta"].shape == item["intensity"].shape
        assert np.isfinite(item["two_theta"]).all() and np.isfinite(item["intensity"]).all()
        assert 0 <= item["y_sg"] < 230 and item["y_sg"] == ds.sg[i] - 1
    table = expect_data_error(lmdb_to_peak_table, path)
    if table is not None:
        assert len(table) == len(ds) and table.validate() is table


@FUZZ
@given(random_bytes, st.sampled_from(["whole", "truncated"]), st.data())
def test_lmdb_random_bytes_and_truncated_file(data, how, draw):
    with tmpdir() as d:
        db = d / "db"
        try:
            if how == "whole":
                db.mkdir()
                (db / "data.mdb").write_bytes(data)
            else:
                write_lmdb(db, _peaks(draw.draw(st.integers(1, 40))))
                raw = (db / "data.mdb").read_bytes()
                # a truncated data.mdb used to kill the process with SIGBUS
                (db / "data.mdb").write_bytes(raw[: draw.draw(st.integers(0, len(raw)))])
            check_lmdb(db)
        finally:
            release_envs()


_RECORD_HEADERS = st.one_of(
    st.dictionaries(st.sampled_from(["sg", "n", "v", "lattice", "formula"]),
                    st.one_of(st.integers(-5, 300), st.sampled_from([1e30, "x", None, [1, 2], 2.5]),
                              st.lists(st.sampled_from([1.0, "a", None]), max_size=7)), max_size=5),
    st.sampled_from([[], "text", 3]))


@FUZZ
@given(st.data())
def test_lmdb_missing_and_garbage_keys(data):
    """A real environment whose bookkeeping keys and records are garbage or missing."""
    import lmdb

    n = data.draw(st.integers(0, 3))
    ok_sg = [1, 14, 225][:n]
    entries = {b"__len__": str(n).encode(), b"__sg__": np.array(ok_sg, "<i2").tobytes(),
               b"__meta__": json.dumps({"format": "xrd-peaks-lmdb", "wavelength": 1.5406}).encode()}
    for i, sg in enumerate(ok_sg):
        entries[b"%08d" % i] = encode_record(np.array([10.0, 20.0]), np.array([100.0, 5.0]), {"sg": sg})
    for key in data.draw(st.lists(st.sampled_from(sorted(entries)), max_size=3, unique=True)):
        kind = data.draw(st.sampled_from(["drop", "bytes", "json", "header", "nan"]))
        if kind == "drop":
            del entries[key]
        elif kind == "bytes":
            entries[key] = data.draw(st.binary(max_size=40))
        elif kind == "json":
            entries[key] = json.dumps(data.draw(_JSON_VALUES)).encode()
        elif kind == "header":
            h = json.dumps(data.draw(_RECORD_HEADERS)).encode()
            entries[key] = b"XRDP" + len(h).to_bytes(4, "little") + h + data.draw(st.binary(max_size=24))
        else:
            entries[key] = encode_record(np.array([10.0, np.nan]), np.array([1.0, np.inf]), {"sg": 14})
    with tmpdir() as d:
        env = lmdb.open(str(d / "db"), map_size=1 << 20)
        with env.begin(write=True) as txn:
            for k, v in entries.items():
                if v:
                    txn.put(k, v)
        env.close()
        try:
            check_lmdb(d / "db")
        finally:
            release_envs()


def test_lmdb_minimal_triggers(tmp_path):
    """Triggers of fixed bugs: SIGBUS on a truncated data.mdb; AttributeError on `__meta__` = null;
    ValueError on an odd-length `__sg__`."""
    import lmdb

    write_lmdb(tmp_path / "a", _peaks(40))
    raw = (tmp_path / "a" / "data.mdb").read_bytes()
    (tmp_path / "a" / "data.mdb").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataError, match="truncated"):
        LmdbPeakDataset(tmp_path / "a")
    for key, value, match in [(b"__meta__", b"null", "unreadable"), (b"__sg__", b"\x01\x00\x02", "int16")]:
        write_lmdb(tmp_path / "b", _peaks(1))
        env = lmdb.open(str(tmp_path / "b"), map_size=1 << 20)
        with env.begin(write=True) as txn:
            txn.put(key, value)
        env.close()
        with pytest.raises(DataError, match=match):
            LmdbPeakDataset(tmp_path / "b")
        release_envs()


# ------------------------------------------------------------------------------ peak tables (.npz)

_PT_ARRAYS = {
    "offsets": [np.array([0, 2, 4]), np.array([0, 3, 2]), np.array([1, 2, 4]), np.array([[0, 2, 4]]),
                np.array([0.0, 2.0, 4.0]), np.array(["0", "2", "4"]), np.array([0, 2, 4], np.uint64)],
    "two_theta": [np.array([10, 20, 30, 40], np.float32), np.array([10, np.nan, 30, 40]),
                  np.array([[10, 20], [30, 40]], np.float32), np.array(["a", "b", "c", "d"]),
                  np.array([1e39, 1, 2, 3]), np.array([1, 2, 3]), np.array([1 + 1j, 2, 3, 4])],
    "intensity": [np.array([100, 50, 100, 7], np.float32), np.array([1, 2, 3, np.inf]),
                  np.array([True, False, True, True]), np.zeros(4, np.float16)],
    "sg": [np.array([1, 230], np.int16), np.array([0, 5]), np.array([70000, 1]), np.array([1.5, 2.0]),
           np.array([1]), np.array(7), np.array([-1, 231], np.int64), np.array([2**63, 1], np.uint64)],
    "wavelength": [np.float64(1.5406), np.float64(np.nan), np.array([1.0, 2.0]), np.array("x"),
                   np.float64(-1.0)],
    "meta_formula": [np.array(["A", "B"]), np.array(["A"]), np.array(3.0)],
}


@FUZZ
@given(st.fixed_dictionaries({}, optional={k: st.sampled_from(v) for k, v in _PT_ARRAYS.items()}),
       random_bytes, st.integers(0, 4))
def test_peak_table_npz(arrays, junk, mode):
    with tmpdir() as d:
        p = d / "t.npz"
        if mode == 0:
            p.write_bytes(b"PK\x03\x04" + junk)
        else:
            np.savez(p, **arrays)
            if mode == 1:
                raw = p.read_bytes()
                p.write_bytes(raw[: len(raw) * len(junk) // 601])
        t = expect_data_error(PeakTable.load, p)
        if t is None:
            return
        assert t.offsets.dtype == np.int64 and t.two_theta.dtype == t.intensity.dtype == np.float32
        assert t.offsets.ndim == t.two_theta.ndim == t.sg.ndim == 1
        assert np.isfinite(t.two_theta).all() and np.isfinite(t.intensity).all()
        assert ((t.sg >= 1) & (t.sg <= 230)).all() and np.isfinite(t.wavelength) and t.wavelength > 0
        np.testing.assert_array_equal(t.sg, arrays["sg"])  # no silent wrap-around of labels
        for i in range(len(t)):
            tt, it = t.peaks(i)
            assert tt.shape == it.shape


# ---------------------------------------------------------------------------------------- .xy

_XY_TOKENS = st.sampled_from(["10", "10.5", "11", "12", "20", "0", "-3", "180", "1e308", "1e-320", "nan",
                              "inf", "-inf", "abc", "1,2", ",", ";", "#", " ", "\t", "\n", "\r\n", "é",
                              "\x00", "5e", "0x10", "1_0", "两"])


@FUZZ
@given(st.one_of(random_bytes, st.lists(_XY_TOKENS, max_size=40).map(lambda t: " ".join(t).encode())),
       st.sampled_from([None, 1.5406, 0.7093, 2.2897]))
def test_xy_random(raw, wavelength):
    with tmpdir() as d:
        p = d / "a.xy"
        p.write_bytes(raw)
        got = expect_data_error(read_xy, p)
        if got is not None:
            t, y = got
            assert t.dtype == y.dtype == np.float64 and t.shape == y.shape and len(t) >= 2
            assert np.isfinite(t).all() and np.isfinite(y).all() and (np.diff(t) > 0).all()
            assert 0 < t[0] and t[-1] < 180 and y.max() > 0
        pat = expect_data_error(pattern_on_grid, p, GRID, wavelength)
        if pat is not None:
            assert pat.dtype == np.float32 and pat.shape == (L,)
            assert np.isfinite(pat).all() and pat.min() >= 0 and pat.max() == pytest.approx(1.0)


@FUZZ
@given(st.lists(st.tuples(st.one_of(st.floats(-10, 200), odd_floats),
                          st.one_of(st.floats(-1e6, 1e6), odd_floats)),
                max_size=12),
       st.sampled_from([" ", ",", "\t"]), st.booleans())
def test_xy_numeric_rows(points, sep, header):
    """Numbers in the right layout, but unsorted/duplicate x, NaN, out-of-range angles."""
    text = ("two_theta,intensity\n" if header else "") + "".join(f"{a!r}{sep}{b!r}\n" for a, b in points)
    with tmpdir() as d:
        p = d / "a.csv"
        p.write_text(text)
        got = expect_data_error(read_xy, p)
        if got is not None:
            t, y = got
            np.testing.assert_array_equal(t, [a for a, _ in points])  # nothing dropped or re-sorted
            assert (np.diff(t) > 0).all() and np.isfinite(y).all()
