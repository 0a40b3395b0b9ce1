"""Safe NPY format, its reader and the legacy (pickle) converter: round trips and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from datasets.readers.convert_legacy import convert
from datasets.readers.convert_legacy import main as legacy_main
from datasets.readers.npy import NpyDataset, build_npy, read_sg_count
from datasets.readers.npy_format import (
    read_dataset_json,
    read_npy,
    record_dtype,
    split_path,
    write_dataset_json,
    write_npy,
)
from datasets.registry import READERS
from utils.errors import DataError, GridMismatchError
from utils.grid import GridSpec

L = 64
GRID = GridSpec(5.0, 90.0, L, 1.5406)


def _cs(sg: int) -> int:  # naive reference for the crystal system (docs/DATA.md table)
    return next(i for i, last in enumerate((2, 15, 74, 142, 167, 194, 230)) if sg <= last)


def _data(n=10, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0, 1, (n, L)).astype(np.float32)
    sg = np.array([1, 2, 14, 62, 139, 166, 194, 225, 230, 3][:n] * (n // 10 + 1))[:n]
    return x, sg


def _write_dataset(root, name="toy", grid=GRID, scale=1.0, val=True, n=10):
    x, sg = _data(n)
    write_npy(split_path(root, name, "train"), x, sg)
    if val:
        write_npy(split_path(root, name, "test_val"), x[:5], sg[:5])
    write_npy(split_path(root, name, "test"), x[5:], sg[5:])
    write_dataset_json(root, name, grid, scale, {"test": True})
    return x, sg


# ------------------------------------------------------------------------------------- format

def test_layout_paths_match_the_seed(tmp_path):
    assert split_path(tmp_path, "ccdc", "train") == tmp_path / "ccdc_sg_train" / "train_ccdc_sg.npy"
    assert split_path(tmp_path, "ccdc", "test_val") == tmp_path / "ccdc_sg_train" / "test_val_ccdc_sg.npy"
    assert split_path(tmp_path, "ccdc", "test") == tmp_path / "ccdc_sg_test" / "test_ccdc_sg.npy"


def test_written_file_is_the_documented_structured_array(tmp_path):
    x, sg = _data()
    p = write_npy(tmp_path / "a.npy", x, sg)
    a = np.load(p, allow_pickle=False, mmap_mode="r")
    assert isinstance(a, np.memmap) and a.shape == (10,)
    assert a.dtype == np.dtype([("intensitys", "<f4", (L,)), ("labels230", "<i2"), ("labels7", "<i1")])
    assert a.dtype.itemsize == 4 * L + 3
    np.testing.assert_array_equal(a["intensitys"], x)
    assert a["labels230"].tolist() == sg.tolist()
    assert a["labels7"].tolist() == [_cs(s) for s in sg]
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write leaves no temp file


def test_round_trip_through_dataset_and_loader(tmp_path):
    x, sg = _write_dataset(tmp_path, scale=4.0)
    ds = NpyDataset(split_path(tmp_path, "toy", "train"), intensity_scale=4.0, n_points=L)
    item = ds[3]
    assert item["x"].dtype == torch.float32 and item["x"].shape == (1, L)
    torch.testing.assert_close(item["x"][0], torch.from_numpy(x[3] / 4.0))
    assert (item["y_sg"], item["y_cs"], item["idx"]) == (sg[3] - 1, _cs(sg[3]), 3)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["x"].shape == (4, 1, L) and batch["y_sg"].dtype == torch.int64
    assert batch["y_sg"].tolist() == [s - 1 for s in sg[:4]] and batch["idx"].tolist() == [0, 1, 2, 3]
    with pytest.raises(IndexError):
        ds[10]


def test_dataset_pickles_without_the_data_and_works_in_workers(tmp_path):
    import pickle

    x, sg = _write_dataset(tmp_path, n=40)
    ds = NpyDataset(split_path(tmp_path, "toy", "train"))
    assert len(pickle.dumps(ds)) < x.nbytes  # the memory map is reopened, not copied
    ys = torch.cat([b["y_sg"] for b in DataLoader(ds, batch_size=8, num_workers=2)])
    assert ys.tolist() == [s - 1 for s in sg]


def test_builder_registered_and_complete(tmp_path):
    x, sg = _write_dataset(tmp_path)
    b = READERS.get("npy")(root=tmp_path, name="toy", seed=0, augment=True, sg_count_path=None)
    assert (len(b.train), len(b.val), len(b.test)) == (10, 5, 5)
    assert b.grid == GRID and b.spec["format"] == "npy" and b.spec["provenance"] == {"test": True}
    expect = np.zeros(230, np.int64)
    for s in sg:
        expect[s - 1] += 1
    np.testing.assert_array_equal(b.class_counts, expect)
    assert b.spec["class_counts_source"] == "training labels"


def test_builder_without_val_split(tmp_path):
    _write_dataset(tmp_path, val=False)
    assert build_npy(tmp_path, "toy").val is None


def test_class_counts_from_csv(tmp_path):
    _write_dataset(tmp_path)
    (tmp_path / "sg_count.csv").write_text("1,500\n225,3\n")
    b = build_npy(tmp_path, "toy")
    assert b.class_counts[0] == 500 and b.class_counts[224] == 3 and b.class_counts.sum() == 503
    (tmp_path / "toy_sg_count.csv").write_text("2,7\n")  # the dataset-specific name wins
    assert build_npy(tmp_path, "toy").class_counts.sum() == 7


@pytest.mark.parametrize("text,match", [("1,5,3\n", "malformed"), ("sg,count\n1,2\n", "malformed"),
                                        ("0,5\n", "out of range"), ("231,5\n", "out of range"),
                                        ("3,-1\n", "out of range"), ("3,1\n3,2\n", "repeated"),
                                        ("\n", "no rows")])
def test_bad_sg_count(tmp_path, text, match):
    p = tmp_path / "sg_count.csv"
    p.write_text(text)
    with pytest.raises(DataError, match=match):
        read_sg_count(p)


def test_missing_dataset_json_assumes_default_grid(tmp_path):
    # Patterns of the default length are accepted; another length is a grid mismatch.
    x = np.zeros((2, 8500), np.float32)
    x[:, 0] = 1
    for s in ("train", "test"):
        write_npy(split_path(tmp_path, "d", s), x, np.array([1, 2]))
    assert build_npy(tmp_path, "d").grid == GridSpec()
    _write_dataset(tmp_path / "short")
    (tmp_path / "short" / "dataset.json").unlink()
    with pytest.raises(GridMismatchError, match="64 points but the grid has 8500"):
        build_npy(tmp_path / "short", "toy")


# ---------------------------------------------------------------------------------- bad inputs

def test_missing_dir_and_files(tmp_path):
    with pytest.raises(DataError, match="processed-data folder not found.*toy_sg_train/train_toy_sg.npy"):
        build_npy(tmp_path / "nope", "toy")
    _write_dataset(tmp_path)
    split_path(tmp_path, "toy", "test").unlink()
    with pytest.raises(DataError, match=r"test_toy_sg.npy: test split not found"):
        build_npy(tmp_path, "toy")
    with pytest.raises(DataError, match="train split not found"):
        build_npy(tmp_path, "other")
    with pytest.raises(DataError, match="file not found"):
        read_npy(tmp_path / "x.npy")
    write_npy(split_path(tmp_path, "toy", "test"), np.zeros((0, L)), np.zeros(0, int))
    with pytest.raises(DataError, match="the test split is empty"):
        build_npy(tmp_path, "toy")


def test_grid_mismatch(tmp_path):
    _write_dataset(tmp_path)
    with pytest.raises(GridMismatchError):
        build_npy(tmp_path, "toy", grid=GridSpec())  # the model expects 8500 points
    write_dataset_json(tmp_path, "toy", GridSpec(5, 90, 100, 1.5406))
    with pytest.raises(GridMismatchError, match="64 points but the grid has 100"):
        build_npy(tmp_path, "toy")


def test_pickled_file_is_refused_with_the_convert_command(tmp_path):
    p = split_path(tmp_path, "ccdc", "train")
    p.parent.mkdir(parents=True)
    np.save(p, {"intensitys": np.zeros((2, 4)), "labels230": np.array([1, 2])}, allow_pickle=True)
    with pytest.raises(DataError, match="legacy pickled file") as e:
        read_npy(p)
    msg = str(e.value)
    assert (f"python -m datasets.readers.convert_legacy --src {tmp_path} --dst {tmp_path}_safe "
            "--dataset ccdc --trust-pickle") in msg
    import pickle
    raw = tmp_path / "raw.npy"
    raw.write_bytes(pickle.dumps({"a": 1}))  # a bare pickle, no NPY header
    with pytest.raises(DataError, match="raw pickle.*convert_legacy"):
        read_npy(raw)


def test_structured_array_with_object_field_refused(tmp_path):
    p = tmp_path / "o.npy"
    np.save(p, np.zeros(2, dtype=[("intensitys", object), ("labels230", "<i2")]), allow_pickle=True)
    with pytest.raises(DataError, match="Python objects"):
        read_npy(p)


@pytest.mark.parametrize("arr,match", [
    (np.zeros((3, L), np.float32), "plain float32 array of shape"),
    (np.zeros(3, dtype=[("intensitys", "<f4", (L,)), ("labels230", "<i2")]), r"missing fields \['labels7'\]"),
    (np.zeros((3, 2), dtype=record_dtype(L)), "must be 1-D"),
    (np.zeros(3, dtype=[("intensitys", "<f4", (4, 4)), ("labels230", "<i2"), ("labels7", "<i1")]),
     "shape \\(L,\\)"),
    (np.zeros(3, dtype=[("intensitys", "<i4", (L,)), ("labels230", "<i2"), ("labels7", "<i1")]),
     "must be float"),
    (np.zeros(3, dtype=[("intensitys", "<f4", (L,)), ("labels230", "<f4"), ("labels7", "<i1")]),
     "integer scalars"),
])
def test_wrong_layout(tmp_path, arr, match):
    p = tmp_path / "bad.npy"
    np.save(p, arr)
    with pytest.raises(DataError, match=match):
        read_npy(p)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_give_the_first_bad_index(tmp_path, bad):
    x, sg = _data(30)
    x[17, 5] = bad
    x[25, 0] = bad
    with pytest.raises(DataError, match="sample 17 has NaN/inf"):
        write_npy(tmp_path / "w.npy", x, sg)
    a = np.zeros(30, record_dtype(L))
    a["intensitys"], a["labels230"] = x, sg
    a["labels7"] = [_cs(s) for s in sg]
    np.save(tmp_path / "r.npy", a)
    with pytest.raises(DataError, match="sample 17 has NaN/inf"):
        read_npy(tmp_path / "r.npy", chunk=4)  # found across chunk boundaries of a memmap
    assert read_npy(tmp_path / "r.npy", check_values=False).shape == (30,)


@pytest.mark.parametrize("label", [0, 231, -3])
def test_labels_outside_range(tmp_path, label):
    x, sg = _data()
    sg[4] = label
    with pytest.raises(DataError, match=rf"labels230\[4\] = {label} is outside 1..230"):
        write_npy(tmp_path / "w.npy", x, sg)
    a = np.zeros(10, record_dtype(L))
    a["labels230"] = sg
    np.save(tmp_path / "r.npy", a)
    with pytest.raises(DataError, match=r"labels230\[4\]"):
        read_npy(tmp_path / "r.npy")


def test_labels7_inconsistent(tmp_path):
    x, sg = _data()
    cs = np.array([_cs(s) for s in sg])
    cs[6] = (cs[6] + 1) % 7
    with pytest.raises(DataError, match=r"labels7\[6\] .* disagrees with labels230 = 194 \(crystal system 5"):
        write_npy(tmp_path / "w.npy", x, sg, labels7=cs)
    a = np.zeros(10, record_dtype(L))
    a["labels230"], a["labels7"] = sg, cs
    np.save(tmp_path / "r.npy", a)
    with pytest.raises(DataError, match=r"r.npy: labels7\[6\]"):
        read_npy(tmp_path / "r.npy")


def test_write_rejects_bad_shapes(tmp_path):
    with pytest.raises(DataError, match=r"must be \(N, L\)"):
        write_npy(tmp_path / "a.npy", np.zeros(5), np.ones(5))
    with pytest.raises(DataError, match="labels230 has shape"):
        write_npy(tmp_path / "a.npy", np.zeros((5, 3)), np.ones(4))
    assert not (tmp_path / "a.npy").exists()


@pytest.mark.parametrize("text,match", [("{", "unreadable"), ('{"intensity_scale": 0}', "not a positive"),
                                        ('{"grid": {"n_points": 1}}', "invalid grid"), ("[1]", "unreadable")])
def test_bad_dataset_json(tmp_path, text, match):
    (tmp_path / "dataset.json").write_text(text)
    with pytest.raises(DataError, match=match):
        read_dataset_json(tmp_path)


# --------------------------------------------------------------------------------- legacy files

def _legacy(root, name="ccdc", n=6, splits=("train", "test_val", "test"), **over):
    rng = np.random.default_rng(1)
    sg = np.array([1, 14, 62, 139, 194, 225][:n])
    out = {}
    for s in splits:
        d = {"intensitys": rng.uniform(0, 100, (n, L)), "labels230": sg.copy(),
             "labels7": np.array([_cs(v) for v in sg]), "angles": 5.0 + np.arange(L) * (85.0 / L),
             "formula": np.array(["X"] * n)}
        d.update(over)
        p = split_path(root, name, s)
        p.parent.mkdir(parents=True, exist_ok=True)
        np.save(p, d, allow_pickle=True)
        out[s] = d
    return out


def test_legacy_conversion_round_trip(tmp_path, capsys):
    src, dst = tmp_path / "old", tmp_path / "new"
    d = _legacy(src)
    (src / "ccdc_sg_count.csv").write_text("1,1\n14,1\n62,1\n139,1\n194,1\n225,1\n")
    assert legacy_main(["--src", str(src), "--dst", str(dst), "--dataset", "ccdc", "--trust-pickle"]) == 0
    meta = json.loads((dst / "dataset.json").read_text())
    assert meta["intensity_scale"] == 1.0 and meta["provenance"]["intensity_divided_by"] == 100.0
    assert "divided by 100" in meta["provenance"]["note"]
    assert meta["provenance"]["splits"]["train"]["ignored_keys"] == ["formula"]
    assert GridSpec.from_dict(meta["grid"]) == GRID
    assert (dst / "ccdc_sg_count.csv").read_text() == (src / "ccdc_sg_count.csv").read_text()
    b = build_npy(dst, "ccdc")
    for split, ds in (("train", b.train), ("test_val", b.val), ("test", b.test)):
        np.testing.assert_allclose(ds[2]["x"][0].numpy(), d[split]["intensitys"][2] / 100, rtol=1e-6)
        assert ds[2]["y_sg"] == 61
    assert b.spec["class_counts_source"].endswith("ccdc_sg_count.csv")


def test_legacy_refused_without_trust_flag(tmp_path, capsys):
    _legacy(tmp_path / "old")
    rc = legacy_main(["--src", str(tmp_path / "old"), "--dst", str(tmp_path / "new"), "--dataset", "ccdc"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "runs arbitrary code" in err and "--trust-pickle" in err
    assert not (tmp_path / "new").exists()


def test_legacy_label_conventions(tmp_path):
    sg = np.array([1, 14, 62, 139, 194, 225])
    _legacy(tmp_path / "a", labels7=np.array([_cs(v) + 1 for v in sg]))  # 1-based labels7 accepted
    prov = convert(tmp_path / "a", tmp_path / "a2", "ccdc", trust_pickle=True)
    assert "1-based" in prov["splits"]["train"]["labels7"]
    assert read_npy(split_path(tmp_path / "a2", "ccdc", "train"))["labels7"].tolist() == [_cs(v) for v in sg]
    _legacy(tmp_path / "b", labels230=sg - 1, labels7=np.array([_cs(v) for v in sg]))
    with pytest.raises(DataError, match="outside 1..230.*zero-based-labels"):
        convert(tmp_path / "b", tmp_path / "b2", "ccdc", trust_pickle=True)
    convert(tmp_path / "b", tmp_path / "b3", "ccdc", trust_pickle=True, zero_based=True)
    assert read_npy(split_path(tmp_path / "b3", "ccdc", "test"))["labels230"].tolist() == sg.tolist()


@pytest.mark.parametrize("over,match", [
    ({"intensitys": np.zeros((6,))}, r"numeric \(N, L\)"),
    ({"labels230": np.array([1, 2])}, "must be 6 integers"),
    ({"labels7": np.array([0, 0, 0, 0, 0, 0])}, r"labels7\[1\]"),
    ({"angles": np.arange(5)}, "angles has shape"),
    ({"angles": np.linspace(90, 5, L)}, "not a uniform increasing"),
])
def test_legacy_bad_content(tmp_path, over, match):
    _legacy(tmp_path / "old", **over)
    with pytest.raises(DataError, match=match):
        convert(tmp_path / "old", tmp_path / "new", "ccdc", trust_pickle=True)


def test_legacy_nan_and_missing(tmp_path):
    x = np.ones((6, L))
    x[4, 3] = np.nan
    _legacy(tmp_path / "old", intensitys=x)
    with pytest.raises(DataError, match="train_ccdc_sg.npy: sample 4 has NaN"):
        convert(tmp_path / "old", tmp_path / "new", "ccdc", trust_pickle=True)
    _legacy(tmp_path / "old2", splits=("train",))
    with pytest.raises(DataError, match="legacy test split not found"):
        convert(tmp_path / "old2", tmp_path / "new2", "ccdc", trust_pickle=True)
    with pytest.raises(DataError, match="source folder not found"):
        convert(tmp_path / "none", tmp_path / "new3", "ccdc", trust_pickle=True)
    _legacy(tmp_path / "old3")
    np.save(split_path(tmp_path / "old3", "ccdc", "train"), {"labels230": [1]}, allow_pickle=True)
    with pytest.raises(DataError, match=r"lacks \['intensitys'\]"):
        convert(tmp_path / "old3", tmp_path / "new4", "ccdc", trust_pickle=True)


def test_legacy_without_angles_uses_the_default_range(tmp_path):
    d = _legacy(tmp_path / "old")
    for s in d:  # rewrite without angles
        d[s].pop("angles")
        np.save(split_path(tmp_path / "old", "ccdc", s), d[s], allow_pickle=True)
    convert(tmp_path / "old", tmp_path / "new", "ccdc", trust_pickle=True)
    assert read_dataset_json(tmp_path / "new")["grid_spec"] == GridSpec(5.0, 90.0, L, 1.5406)
