"""Raw (MP20-style) CIF CSVs: parsing, spglib labels, skip-and-report of broken CIFs, cache, reader."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

import datasets.readers.cif_csv as raw
from datasets.registry import READERS
from datasets.synthesis.reflections import structure_peaks
from utils.errors import DataError
from utils.grid import GridSpec

pytest.importorskip("pymatgen")


def _structures():
    from pymatgen.core import Lattice, Structure

    return {
        "mp-nacl": (Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                              [[0, 0, 0], [0.5, 0.5, 0.5]]), 225),
        "mp-si": (Structure.from_spacegroup("P2_1/c", Lattice.monoclinic(5, 6, 7, 100), ["Si"],
                                            [[0.1, 0.2, 0.3]]), 14),
        "mp-ti": (Structure.from_spacegroup("P4/mmm", Lattice.tetragonal(3.9, 4.1), ["Ti", "O"],
                                            [[0, 0, 0], [0.5, 0.5, 0.5]]), 123),
    }


BROKEN = "data_broken\n_cell_length_a 5.0\n_symmetry_space_group_name_H-M 'P 1'\n"


def _csv(path, rows, sg_col="spacegroup.number"):
    cols = ["material_id", "pretty_formula", "cif"] + ([sg_col] if sg_col else [])
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(cols)
        for r in rows:
            w.writerow(r[: len(cols)])


@pytest.fixture()
def folder(tmp_path):
    s = _structures()

    def row(k, sg=None):
        st, true_sg = s[k]
        return [k, st.composition.reduced_formula, st.to(fmt="cif"), true_sg if sg is None else sg]

    _csv(tmp_path / "train.csv", [row("mp-nacl"), ["mp-bad", "X", BROKEN, 1], row("mp-si"),
                                  ["mp-garbage", "Y", "not a cif at all", 2]])
    _csv(tmp_path / "val.csv", [row("mp-ti")])
    _csv(tmp_path / "test.csv", [row("mp-si"), row("mp-nacl")], sg_col=None)  # labels by spglib
    return tmp_path


def test_tables_skip_broken_cifs_and_report(folder):
    tables = raw.load_raw_tables(folder, workers=1)
    assert set(tables) == {"train", "val", "test"}
    tr = tables["train"]
    assert tr.sg.tolist() == [225, 14] and tr.meta["source_id"].tolist() == ["mp-nacl", "mp-si"]
    assert tr.meta["formula"].tolist() == ["NaCl", "Si"]
    np.testing.assert_allclose(tr.meta["lattice"][0], [5.64, 5.64, 5.64, 90, 90, 90], rtol=1e-5)
    ref_tt, ref_it = structure_peaks(_structures()["mp-nacl"][0])  # the same function as the simulator
    np.testing.assert_array_equal(tr.peaks(0)[0], ref_tt)
    np.testing.assert_array_equal(tr.peaks(0)[1], ref_it)
    rep = raw.raw_report(folder, "train")
    assert (rep["rows"], rep["ok"], rep["skipped"]) == (4, 2, 2)
    assert [r["id"] for r in rep["skipped_rows"]] == ["mp-bad", "mp-garbage"]
    assert all(r["error"] for r in rep["skipped_rows"])
    assert tables["test"].sg.tolist() == [14, 225]  # determined by spglib (no label column)
    assert raw.raw_report(folder, "test")["sg_from_spglib"] == 2
    assert tables["val"].sg.tolist() == [123]


def test_cache_hit_and_invalidation(folder, monkeypatch):
    first = raw.load_raw_tables(folder, workers=1)
    assert len(list((folder / "cache").glob("raw_*.npz"))) == 3

    def boom(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(raw, "build_split", boom)
    again = raw.load_raw_tables(folder, workers=1)
    np.testing.assert_array_equal(again["train"].two_theta, first["train"].two_theta)
    with pytest.raises(AssertionError, match="recomputed"):
        raw.load_raw_tables(folder, wavelength=0.7093, workers=1)  # another wavelength: new key
    with open(folder / "val.csv", "a") as fh:
        fh.write("\n")  # edited CSV: new key
    with pytest.raises(AssertionError, match="recomputed"):
        raw.load_raw_tables(folder, workers=1)


def test_empty_label_cell_uses_spglib_and_sg_alias(tmp_path):
    st = _structures()["mp-nacl"][0]
    _csv(tmp_path / "train_a.csv", [["a", "NaCl", st.to(fmt="cif"), ""]], sg_col="sg")
    _csv(tmp_path / "train_b.csv", [["b", "NaCl", st.to(fmt="cif"), "5"]], sg_col="sg")
    _csv(tmp_path / "test.csv", [["c", "NaCl", st.to(fmt="cif"), "225.0"]], sg_col="sg")
    t = raw.load_raw_tables(tmp_path, workers=1, use_cache=False)
    assert t["train"].sg.tolist() == [225, 5]  # files concatenated in name order; the CSV label wins
    assert t["test"].sg.tolist() == [225]
    assert not (tmp_path / "cache").exists()


@pytest.mark.parametrize("value", ["231", "0", "abc", "3.5"])
def test_bad_label_is_an_error(tmp_path, value):
    st = _structures()["mp-nacl"][0]
    _csv(tmp_path / "train.csv", [["a", "NaCl", st.to(fmt="cif"), value]])
    _csv(tmp_path / "test.csv", [["a", "NaCl", st.to(fmt="cif"), "225"]])
    with pytest.raises(DataError, match=r"train.csv row 0 \(a\): space group .* not an integer in 1..230"):
        raw.load_raw_tables(tmp_path, workers=1)


def test_missing_files_and_columns(tmp_path):
    with pytest.raises(DataError, match="raw data folder not found"):
        raw.load_raw_tables(tmp_path / "none")
    _csv(tmp_path / "train.csv", [["a", "X", BROKEN, 1]])
    with pytest.raises(DataError, match=r"test\*.csv: no test CSV file"):
        raw.load_raw_tables(tmp_path)
    _csv(tmp_path / "test.csv", [["a", "X", BROKEN, 1]])
    with pytest.raises(DataError, match="none of the 1 rows gave a structure"):
        raw.load_raw_tables(tmp_path, workers=1)
    (tmp_path / "train.csv").write_text("material_id,structure\na,b\n")
    with pytest.raises(DataError, match="no 'cif' column"):
        raw.load_raw_tables(tmp_path, workers=1)
    (tmp_path / "train.csv").write_text("material_id,cif\n")
    with pytest.raises(DataError, match="no rows"):
        raw.load_raw_tables(tmp_path, workers=1)


def test_reader_renders_batches(folder):
    grid = GridSpec(5.0, 90.0, 1024, 1.5406)
    b = READERS.get("raw")(root=folder, name="mp20", grid=grid, seed=0, augment=True, sg_count_path=None)
    assert (len(b.train), len(b.val), len(b.test)) == (2, 1, 2)
    assert b.class_counts[224] == 1 and b.class_counts[13] == 1 and b.class_counts.sum() == 2
    assert b.spec["format"] == "raw" and b.grid == grid
    item = b.train[0]
    assert set(item) == {"two_theta", "intensity", "y_sg", "y_cs", "idx"}
    assert (item["y_sg"], item["y_cs"]) == (224, 6)
    batch = next(iter(DataLoader(b.test, batch_size=2, collate_fn=b.eval_collate)))
    assert batch["x"].shape == (2, 1, 1024) and batch["y_sg"].tolist() == [13, 224]
    assert torch.allclose(batch["x"].amax(dim=-1), torch.ones(2, 1))
    # the strongest NaCl reflection (200) at 2θ = 31.7° is the maximum of the rendered pattern
    two_theta = torch.as_tensor(grid.two_theta())
    assert abs(float(two_theta[batch["x"][1, 0].argmax()]) - 31.70) < 0.1


@pytest.mark.slow
def test_process_pool_gives_the_same_table(folder, monkeypatch):
    monkeypatch.setattr(raw, "_PARALLEL_MIN_ROWS", 2)
    a = raw.load_raw_tables(folder, workers=2, use_cache=False)
    monkeypatch.setattr(raw, "_PARALLEL_MIN_ROWS", 10**9)
    b = raw.load_raw_tables(folder, workers=1, use_cache=False)
    for s in a:
        np.testing.assert_array_equal(a[s].two_theta, b[s].two_theta)
        assert a[s].sg.tolist() == b[s].sg.tolist()


def test_report_json_is_valid(folder):
    raw.load_raw_tables(folder, workers=1)
    reports = sorted((folder / "cache").glob("raw_train_*_report.json"))
    assert len(reports) == 1
    rep = json.loads(reports[0].read_text())
    assert rep["files"] == [str(folder / "train.csv")] and rep["symprec"] == 0.1
