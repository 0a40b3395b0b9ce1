"""Property-based bad input for the raw (MP20-style) reader: CSV files of CIF strings.

A broken CIF row is skipped and reported, never a crash (spglib segfaults on a degenerate cell) or
non-finite peaks; a broken CSV file raises ``DataError``; a garbage cache is recomputed.
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.test_fuzz_readers import expect_data_error, fuzz, random_bytes, tmpdir

pytest.importorskip("pymatgen")


CIF = """data_NaCl
_symmetry_space_group_name_H-M   'P 1'
_cell_length_a   5.64
_cell_length_b   5.64
_cell_length_c   5.64
_cell_angle_alpha   90
_cell_angle_beta   90
_cell_angle_gamma   90
_symmetry_Int_Tables_number   1
loop_
 _symmetry_equiv_pos_as_xyz
  'x, y, z'
loop_
 _atom_site_type_symbol
 _atom_site_label
 _atom_site_fract_x
 _atom_site_fract_y
 _atom_site_fract_z
 _atom_site_occupancy
  Na  Na0  0.0  0.0  0.0  1
  Cl  Cl1  0.5  0.5  0.5  1
"""


@st.composite
def broken_cifs(draw):
    lines = CIF.splitlines()
    for _ in range(draw(st.integers(1, 3))):
        if not lines:
            break
        i = draw(st.integers(0, len(lines) - 1))
        kind = draw(st.sampled_from(["drop", "number", "junk", "truncate"]))
        if kind == "drop":
            del lines[i]
        elif kind == "number" and lines[i].startswith("_cell"):
            value = draw(st.sampled_from(["0", "-5", "180", "nan", "abc", "2.1"]))
            lines[i] = f"{lines[i].split()[0]} {value}"
        elif kind == "junk":
            lines[i] = draw(st.text(max_size=12))
        else:
            lines = lines[:i]
    return "\n".join(lines) + "\n"


def check_table(t):
    assert len(t) >= 1 and np.isfinite(t.two_theta).all() and np.isfinite(t.intensity).all()
    assert ((t.sg >= 1) & (t.sg <= 230)).all() and t.meta["lattice"].shape == (len(t), 6)


@fuzz(25)
@given(broken_cifs(), st.sampled_from([None, None, 1, 225]))
def test_raw_process_row_never_raises(cif, sg):
    """One broken CIF is skipped and reported; it never stops the split or yields bad peaks."""
    from datasets.readers.cif_csv import process_row

    r = process_row(("row", cif, sg, 1.5406, (5.0, 90.0)))
    assert set(r) >= {"id", "ok"}
    if r["ok"]:
        assert 1 <= r["sg"] <= 230 and len(r["two_theta"]) == len(r["intensity"]) > 0
        assert np.isfinite(r["two_theta"]).all() and np.isfinite(r["intensity"]).all()
    else:
        assert isinstance(r["error"], str) and r["error"]


def test_raw_degenerate_cell_is_skipped_not_a_segfault():
    """Trigger of a fixed bug: `_cell_angle_alpha 0` gave NaN coordinates and spglib segfaulted."""
    from datasets.readers.cif_csv import process_row

    cif = CIF.replace("_cell_angle_alpha   90", "_cell_angle_alpha 0")
    r = process_row(("row", cif, None, 1.5406, (5.0, 90.0)))
    assert not r["ok"] and "degenerate cell" in r["error"]


def _csv_text(header, rows):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


@fuzz(20)
@given(st.one_of(random_bytes, st.builds(
    _csv_text,
    st.lists(st.sampled_from(["material_id", "cif", "sg", "spacegroup.number", "x", ""]), max_size=4),
    st.lists(st.lists(st.one_of(st.sampled_from([CIF, "not a cif", "", "225", "0", "1.5", "231", "nan",
                                                 "1e400", "-1"]), st.text(max_size=6)),
                      max_size=4), max_size=3)).map(str.encode)))
def test_raw_csv_files(train_csv):
    """load_raw_tables on random train.csv content (a valid test.csv beside it)."""
    from datasets.readers.cif_csv import load_raw_tables

    with tmpdir() as d:
        (d / "train.csv").write_bytes(train_csv)
        (d / "test.csv").write_text(_csv_text(["material_id", "cif"], [["m1", CIF]]))
        tables = expect_data_error(load_raw_tables, d, workers=1, use_cache=False)
        if tables is not None:
            for t in tables.values():
                check_table(t)


def test_raw_garbage_cache_and_report_are_recomputed(tmp_path):
    """Trigger of a fixed bug: a garbage report JSON next to a cache raised JSONDecodeError."""
    from datasets.readers.cif_csv import load_raw_tables

    for s in ("train", "test"):
        (tmp_path / f"{s}.csv").write_text(_csv_text(["material_id", "cif", "sg"], [["m1", CIF, "1"]]))
    load_raw_tables(tmp_path, workers=1)
    for f in (tmp_path / "cache").iterdir():
        f.write_bytes(b"\x00garbage")
    tables = load_raw_tables(tmp_path, workers=1)
    for t in tables.values():
        check_table(t)
