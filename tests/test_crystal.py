"""utils/crystal.py and the shipped tables in utils/data, against hand-written references."""

from __future__ import annotations

import ast
import csv
import json
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from utils import crystal as C

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "utils" / "data"
# (first, last, index) of each crystal system, from docs/DATA.md
CS_RANGES = [(1, 2, 0), (3, 15, 1), (16, 74, 2), (75, 142, 3), (143, 167, 4), (168, 194, 5), (195, 230, 6)]
# The 32 point groups (spglib spelling) → their Laue class (International Tables, Table 3.2.1.2)
LAUE = {"1": "-1", "-1": "-1", "2": "2/m", "m": "2/m", "2/m": "2/m", "222": "mmm", "mm2": "mmm",
        "mmm": "mmm", "4": "4/m", "-4": "4/m", "4/m": "4/m", "422": "4/mmm", "4mm": "4/mmm",
        "-42m": "4/mmm", "4/mmm": "4/mmm", "3": "-3", "-3": "-3", "32": "-3m", "3m": "-3m", "-3m": "-3m",
        "6": "6/m", "-6": "6/m", "6/m": "6/m", "622": "6/mmm", "6mm": "6/mmm", "-6m2": "6/mmm",
        "6/mmm": "6/mmm", "23": "m-3", "m-3": "m-3", "432": "m-3m", "-43m": "m-3m", "m-3m": "m-3m"}
PG_ORDER = {"1": 1, "-1": 2, "2": 2, "m": 2, "2/m": 4, "222": 4, "mm2": 4, "mmm": 8, "4": 4, "-4": 4,
            "4/m": 8, "422": 8, "4mm": 8, "-42m": 8, "4/mmm": 16, "3": 3, "-3": 6, "32": 6, "3m": 6,
            "-3m": 12, "6": 6, "-6": 6, "6/m": 12, "622": 12, "6mm": 12, "-6m2": 12, "6/mmm": 24,
            "23": 12, "m-3": 24, "432": 24, "-43m": 24, "m-3m": 48}
CENTRING_MULT = {"P": 1, "A": 2, "C": 2, "I": 2, "F": 4, "R": 3}
FAMILY = {"triclinic": "a", "monoclinic": "m", "orthorhombic": "o", "tetragonal": "t", "trigonal": "h",
          "hexagonal": "h", "cubic": "c"}


# ------------------------------------------------------------------ SG → CS, masks, enantiomorphs
@pytest.mark.parametrize("lo,hi,cs", CS_RANGES)
def test_sg_to_cs_boundaries(lo, hi, cs):
    for sg in (lo, hi):
        assert C.sg_to_cs_number(sg) == cs
        assert C.SG_TO_CS[sg - 1] == cs
    if lo > 1:
        assert C.sg_to_cs_number(lo - 1) == cs - 1
    assert C.CRYSTAL_SYSTEMS[cs] == C.space_group_table()[lo - 1]["crystal_system"]


@pytest.mark.parametrize("bad", [0, 231, -5])
def test_sg_to_cs_rejects_out_of_range(bad):
    with pytest.raises(ValueError, match="outside 1..230"):
        C.sg_to_cs_number(bad)


def test_sg_to_cs_tensor_matches_naive():
    y = torch.tensor([[0, 1, 2], [14, 15, 73], [74, 141, 142], [166, 167, 229]])
    naive = torch.tensor([[next(c for lo, hi, c in CS_RANGES if lo <= int(v) + 1 <= hi) for v in row]
                          for row in y])
    assert torch.equal(C.sg_to_cs(y), naive)
    assert C.sg_to_cs(y).shape == y.shape


def test_cs_sg_mask_rows_and_columns():
    m = C.cs_sg_mask()
    assert m.shape == (7, 230) and m.dtype == torch.bool
    assert m.sum(1).tolist() == [2, 13, 59, 68, 25, 27, 36]
    assert torch.all(m.sum(0) == 1)
    for lo, hi, cs in CS_RANGES:
        assert m[cs, lo - 1 : hi].all()


def test_enantiomorph_partner_is_an_involution():
    p = C.enantiomorph_partner()
    assert np.array_equal(p[p], np.arange(230))
    assert (p != np.arange(230)).sum() == 22
    for a, b in C.ENANTIOMORPH_PAIRS:
        assert p[a - 1] == b - 1 and p[b - 1] == a - 1
        assert C.SG_TO_CS[a - 1] == C.SG_TO_CS[b - 1]
        assert C.point_group(a) == C.point_group(b)  # mirror images share the point group


# --------------------------------------------------------------------------- extinction groups
def test_extinction_table():
    with open(DATA / "sg_extinction_groups.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["space_group"]) for r in rows] == list(range(1, 231))
    ext = C.extinction_groups()
    assert len(set(ext.tolist())) == 99 and set(ext.tolist()) == set(range(1, 100))
    assert ext[0] == ext[1] == 99  # triclinic
    for r in rows:
        assert r["crystal_system"] == C.CRYSTAL_SYSTEMS[C.SG_TO_CS[int(r["space_group"]) - 1]]
    for a, b in C.ENANTIOMORPH_PAIRS:
        assert ext[a - 1] == ext[b - 1]


def test_extinction_group_fixes_the_bravais_lattice():
    # The crystallographic rule matrix relies on it (same extinction ⇒ same lattice, ≥ 0.85).
    ext, lat = C.extinction_groups(), C.sg_column("bravais_lattice")
    for e in range(1, 100):
        assert len(set(lat[ext == e])) == 1, e


# --------------------------------------------------------------------------- space_groups.csv
@pytest.mark.parametrize("sg,symbol", [(1, "P1"), (2, "P-1"), (14, "P2_1/c"), (62, "Pnma"), (64, "Cmce"),
                                       (166, "R-3m"), (194, "P6_3/mmc"), (225, "Fm-3m"), (227, "Fd-3m"),
                                       (230, "Ia-3d")])
def test_known_symbols(sg, symbol):
    assert C.sg_symbol(sg) == symbol
    assert C.sg_number(symbol) == sg
    assert C.sg_number(symbol.replace("_", "")) == sg


def test_symbols_are_unique_and_round_trip():
    assert C.sg_symbol(14, full=True) == "P 1 2_1/c 1"
    assert len({C.sg_symbol(n) for n in range(1, 231)}) == 230
    assert all(C.sg_number(C.sg_symbol(n)) == n for n in range(1, 231))
    with pytest.raises(KeyError):
        C.sg_number("Xyz")
    with pytest.raises(ValueError):
        C.sg_symbol(0)


def test_point_groups_laue_classes_and_counts():
    rows = C.space_group_table()
    pgs = Counter(r["point_group"] for r in rows)
    assert set(pgs) == set(LAUE)  # all 32 crystal classes occur
    for r in rows:
        assert r["laue_class"] == LAUE[r["point_group"]], r["number"]
        assert r["point_group_order"] == PG_ORDER[r["point_group"]], r["number"]
        assert r["n_ops"] == r["point_group_order"] * CENTRING_MULT[r["centring"]], r["number"]
        assert r["symbol"].startswith(r["centring"])
        assert r["bravais_lattice"][0] == FAMILY[r["crystal_system"]]
        assert r["bravais_lattice"][1] == ("C" if r["centring"] in "ABC" else r["centring"])
    laue = Counter(r["laue_class"] for r in rows)
    assert laue == {"-1": 2, "2/m": 13, "mmm": 59, "4/m": 14, "4/mmm": 54, "-3": 6, "-3m": 19, "6/m": 9,
                    "6/mmm": 18, "m-3": 12, "m-3m": 24}
    assert len(set(C.sg_column("bravais_lattice"))) == 14
    assert C.laue_class(75) == "4/m" and C.point_group(62) == "mmm" and C.centring(38) == "A"
    assert C.bravais_lattice(146) == "hR" and C.bravais_lattice(38) == "oC"


# --------------------------------------------------------------------------- subgroups
def test_known_maximal_subgroups():
    # International Tables A1: Fm-3m, P2_1/c, P1.
    assert C.maximal_subgroups(225, "t") == (139, 166, 202, 209, 216)
    assert C.maximal_subgroups(225, "k") == (221, 224)
    assert C.maximal_subgroups(14, "t") == (2, 4, 7)
    assert C.maximal_subgroups(1) == ()
    with pytest.raises(ValueError):
        C.maximal_subgroups(14, "x")


def test_subgroup_orders_are_consistent():
    order = C.sg_column("point_group_order")
    pg = C.sg_column("point_group")
    for sg in range(1, 231):
        for sub in C.maximal_subgroups(sg, "t"):  # same translations, smaller point group
            assert order[sg - 1] % order[sub - 1] == 0 and order[sub - 1] < order[sg - 1], (sg, sub)
        for sub in C.maximal_subgroups(sg, "k"):  # same crystal class, fewer translations
            assert pg[sub - 1] == pg[sg - 1], (sg, sub)


# --------------------------------------------------------------------------- operations
def _parse(op: str) -> tuple[np.ndarray, np.ndarray]:
    """Naive parser of an 'x,y,z' string into (W, w) with Fraction translations."""
    rot, trans = np.zeros((3, 3), dtype=int), [Fraction(0)] * 3
    for i, row in enumerate(op.split(",")):
        for term in row.replace("-", "+-").split("+"):
            if not term:
                continue
            if "/" in term:
                trans[i] += Fraction(term)
            else:
                sign = -1 if term.startswith("-") else 1
                rot[i, "xyz".index(term[-1])] += sign
    return rot, np.array(trans, dtype=object)


def _closed(ops: list[str]) -> bool:
    """Naive closure check: every product W1·W2, W1·w2 + w1 (mod 1) is in the list."""
    keyset = set()
    parsed = [_parse(o) for o in ops]
    for r, t in parsed:
        keyset.add((r.tobytes(), tuple(x % 1 for x in t)))
    for r1, t1 in parsed:
        for r2, t2 in parsed:
            r = r1 @ r2
            t = tuple((sum(r1[i, k] * t2[k] for k in range(3)) + t1[i]) % 1 for i in range(3))
            if (r.tobytes(), t) not in keyset:
                return False
    return True


@pytest.mark.parametrize("sg", [2, 9, 15, 19, 24, 62, 64, 70, 122, 142, 146, 167, 176, 194, 205, 230])
def test_operations_form_a_group(sg):
    ops = C.symmetry_operations(sg, centred=True)
    assert len(ops) == len(set(ops)) == C.space_group_table()[sg - 1]["n_ops"]
    assert ops[0] == "x,y,z"
    assert _closed(list(ops))


def test_coset_representatives():
    for sg in range(1, 231):
        n = C.space_group_table()[sg - 1]["point_group_order"]
        for setting in ("standard", "seed"):
            reps = C.symmetry_operations(sg, setting)
            assert len(reps) == n and "x,y,z" in reps
            assert len({_parse(o)[0].tobytes() for o in reps}) == n  # one per rotation
    assert C.symmetry_operations(3, "seed") == ("x,y,z", "-x,-y,z")  # unique axis c
    assert C.symmetry_operations(3) == ("x,y,z", "-x,y,-z")  # unique axis b
    with pytest.raises(ValueError):
        C.symmetry_operations(3, "other")


# --------------------------------------------------------------------------- layering / regeneration
def test_utils_do_not_import_pyxtal_or_spglib():
    for name in ("crystal.py", "rule_matrix.py"):
        tree = ast.parse((ROOT / "utils" / name).read_text())
        mods = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        mods |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert not mods & {"pyxtal", "spglib", "pymatgen"}, name


def test_json_tables_cover_all_groups():
    for name in ("sg_maximal_subgroups.json", "sg_symops.json"):
        with open(DATA / name) as fh:
            assert sorted(int(k) for k in json.load(fh)) == list(range(1, 231))


@pytest.mark.slow
def test_shipped_tables_match_regeneration():
    pytest.importorskip("pyxtal")
    pytest.importorskip("spglib")
    from datasets.crystal_tables import build_tables, check_tables

    assert check_tables(build_tables(), DATA) == []


def test_per_system_sums_groups_by_crystal_system():
    from utils.crystal import per_system
    counts = torch.arange(1, 231, dtype=torch.float64)  # count of group s = s
    got = per_system(counts)
    # triclinic 1-2, monoclinic 3-15, orthorhombic 16-74, tetragonal 75-142, trigonal 143-167,
    # hexagonal 168-194, cubic 195-230: sums of consecutive integers, by hand.
    bounds = [(1, 2), (3, 15), (16, 74), (75, 142), (143, 167), (168, 194), (195, 230)]
    want = [sum(range(a, b + 1)) for a, b in bounds]
    assert got.tolist() == want and got.dtype == torch.float64
    assert per_system(torch.ones(3, 230)).tolist() == [[2, 13, 59, 68, 25, 27, 36]] * 3  # batched
    with pytest.raises(ValueError, match="230"):
        per_system(torch.ones(229))
