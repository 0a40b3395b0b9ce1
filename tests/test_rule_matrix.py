"""utils/rule_matrix.py: recipes against naive re-implementations, I/O and every invalid case."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

from utils import crystal as C
from utils import rule_matrix as RM
from utils.errors import ConfigError, RuleMatrixError

DATA = Path(__file__).resolve().parents[1] / "utils" / "data"
RECIPES = ["crystallographic", "symop_cosine", "symop_cosine_standard"]


@pytest.fixture(scope="module")
def matrices():
    return {r: RM.build_rule_matrix(r) for r in RECIPES}


def _rows():
    with open(DATA / "space_groups.csv", newline="") as fh:
        return list(csv.DictReader(fh))


# ---------------------------------------------------------------------------- properties
@pytest.mark.parametrize("recipe", RECIPES)
def test_matrix_properties(matrices, recipe):
    m = matrices[recipe]
    assert m.shape == (230, 230) and m.dtype == np.float64
    assert np.array_equal(m, m.T)
    assert np.all(np.diag(m) == 1.0)
    assert m.min() >= 0.0 and m.max() <= 1.0


def test_unknown_recipe():
    with pytest.raises(KeyError, match="crystallographic"):
        RM.build_rule_matrix("nope")


def test_crystallographic_equals_naive_reference(matrices):
    """Every entry recomputed pair by pair from the raw CSV/JSON files with explicit ifs."""
    rows = _rows()
    with open(DATA / "sg_maximal_subgroups.json") as fh:
        sub = {int(k): set(v["t"]) | set(v["k"]) for k, v in json.load(fh).items()}
    enantio = {frozenset(p) for p in C.ENANTIOMORPH_PAIRS}
    w = RM.CRYSTALLOGRAPHIC_WEIGHTS
    m = matrices["crystallographic"]
    for i in range(230):
        for j in range(i + 1, 230):
            a, b = rows[i], rows[j]
            s = 0.0
            s += w["extinction_group"] * (a["extinction_group"] == b["extinction_group"])
            s += w["bravais_lattice"] * (a["bravais_lattice"] == b["bravais_lattice"])
            s += w["crystal_system"] * (a["crystal_system"] == b["crystal_system"])
            s += w["laue_class"] * (a["laue_class"] == b["laue_class"])
            s += w["point_group"] * (a["point_group"] == b["point_group"])
            related = (j + 1) in sub[i + 1] or (i + 1) in sub[j + 1] or frozenset((i + 1, j + 1)) in enantio
            s += w["group_subgroup"] * related
            assert math.isclose(m[i, j], s, abs_tol=1e-12), (i + 1, j + 1, m[i, j], s)


def test_crystallographic_hand_values(matrices):
    m = matrices["crystallographic"]
    r = lambda a, b: m[a - 1, b - 1]  # noqa: E731
    assert r(1, 2) == pytest.approx(0.60 + 0.25 + 0.03 + 0.03 + 0.05)  # P1 ⊂ P-1, same Laue class
    assert r(221, 225) == pytest.approx(0.03 + 0.03 + 0.04 + 0.05)  # Pm-3m is a k-subgroup of Fm-3m
    # P2_1/c vs P2/c: one absence apart; P2_1/c is a maximal k-subgroup of P2/c (b' = 2b)
    assert 14 in C.maximal_subgroups(13, "k")
    assert r(14, 13) == pytest.approx(0.25 + 0.03 + 0.03 + 0.04 + 0.05)
    assert r(1, 230) == 0.0
    assert r(143, 191) == pytest.approx(0.85)  # P3 vs P6/mmm: same extinction group and hP lattice


def test_crystallographic_threshold_selects_extinction_groups(matrices):
    m = matrices["crystallographic"]
    ext = C.extinction_groups()
    same = ext[:, None] == ext[None, :]
    off = ~np.eye(230, dtype=bool)
    assert np.array_equal(m[off] > RM.THRESHOLD, same[off])
    assert m[same].min() >= 0.85 and m[off & ~same].max() <= 0.40 + 1e-12
    for a, b in C.ENANTIOMORPH_PAIRS:
        assert m[a - 1, b - 1] == pytest.approx(1.0)
    assert int(np.triu(m > RM.THRESHOLD, 1).sum()) == 356


def test_crystallographic_different_systems_mostly_low(matrices):
    m = matrices["crystallographic"]
    cs = C.SG_TO_CS
    cross = cs[:, None] != cs[None, :]
    assert (m[cross] <= 0.05 + 1e-12).mean() > 0.95
    hi = np.argwhere(cross & (m > RM.THRESHOLD))
    assert {(cs[i], cs[j]) for i, j in hi} <= {(4, 5), (5, 4)}  # only trigonal/hexagonal P groups


def test_weights_are_checked():
    w = dict(RM.CRYSTALLOGRAPHIC_WEIGHTS)
    with pytest.raises(ConfigError, match="sum to 1"):
        RM.crystallographic_matrix({**w, "point_group": 0.5})
    with pytest.raises(ConfigError, match="keys"):
        RM.crystallographic_matrix({"extinction_group": 1.0})
    only_ext = dict.fromkeys(w, 0.0) | {"extinction_group": 1.0}
    m = RM.crystallographic_matrix(only_ext)
    ext = C.extinction_groups()
    assert np.array_equal(m, (ext[:, None] == ext[None, :]).astype(float))


# ---------------------------------------------------------------------------- symop cosine
@pytest.mark.parametrize("setting,recipe", [("seed", "symop_cosine"), ("standard", "symop_cosine_standard")])
def test_symop_cosine_equals_naive(matrices, setting, recipe):
    ops = [set(C.symmetry_operations(s, setting)) for s in range(1, 231)]
    m = matrices[recipe]
    for i in range(0, 230, 7):
        for j in range(230):
            ref = len(ops[i] & ops[j]) / math.sqrt(len(ops[i]) * len(ops[j]))
            assert m[i, j] == pytest.approx(ref, abs=1e-12)


def test_symop_cosine_reproduces_the_seed(matrices):
    m = matrices["symop_cosine"]
    order = C.sg_column("point_group_order")
    assert np.allclose(m[0], 1 / np.sqrt(order))  # row of P1: only the identity is shared
    assert m[2, 4] == pytest.approx(1.0)  # P2 = C2 once centring is dropped (seed: 1.0)
    assert m[2, 17] == pytest.approx(1 / math.sqrt(2))  # P2 (unique axis c) vs P2_12_12 (seed: 0.7071)
    assert m[18, 23] == pytest.approx(0.25)  # P2_12_12_1 vs I2_12_12_1 (seed: 0.25)
    assert int(np.triu(m > RM.THRESHOLD, 1).sum()) == 66  # as stated for the original
    off = m[~np.eye(230, dtype=bool)]
    assert off.min() == pytest.approx(1 / math.sqrt(24 * 48))
    std = matrices["symop_cosine_standard"]
    assert std[2, 17] == pytest.approx(1 / math.sqrt(8))  # unique axis b shares only x,y,z
    assert int(np.triu(std > RM.THRESHOLD, 1).sum()) == 80


# ---------------------------------------------------------------------------- I/O
def test_save_load_round_trip(tmp_path, matrices):
    p = RM.save_rule_matrix(matrices["crystallographic"], tmp_path / "sub" / "rule_matrix.csv")
    lines = p.read_text().splitlines()
    assert len(lines) == 230 and all(len(line.split(",")) == 230 for line in lines)
    assert lines[0].split(",")[0] == "1.0"  # no header
    assert np.array_equal(RM.load_rule_matrix(p), matrices["crystallographic"])
    assert [f.name for f in p.parent.iterdir()] == ["rule_matrix.csv"]  # no temp file left


def test_cli_writes_a_loadable_matrix(tmp_path, capsys, matrices):
    out = tmp_path / "r.csv"
    assert RM.main(["--recipe", "symop_cosine", "--out", str(out)]) == 0
    assert "66 pairs > 0.8" in capsys.readouterr().out
    assert np.allclose(RM.load_rule_matrix(out), matrices["symop_cosine"], atol=0, rtol=0)


def _write(path: Path, a) -> Path:
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(a)
    return path


def _good():
    return np.eye(230)


def _bad_cases():
    nan = _good()
    nan[3, 7] = nan[7, 3] = np.nan
    inf = _good()
    inf[5, 5] = np.inf
    asym = _good()
    asym[10, 20] = 0.5
    outside = _good()
    outside[1, 2] = outside[2, 1] = 1.5
    diag = _good()
    diag[4, 4] = 0.9
    text = _good().astype(object)
    text[0, 1] = "abc"
    return {"shape": (np.eye(229, 230), r"found \(229, 230\)"), "non-numeric": (text, "not numeric"),
            "header": ([[f"c{i}" for i in range(230)], *np.eye(230)], "not numeric"),
            "ragged": ([[1.0] * 230, [0.0] * 229], "ragged"),
            "nan": (nan, "NaN/inf"), "inf": (inf, "NaN/inf"),
            "asymmetric": (asym, r"not symmetric: R\[11,21\]=0.5"), "outside": (outside, "outside"),
            "diagonal": (diag, r"diagonal must be 1, R\[5,5\]=0.9")}


@pytest.mark.parametrize("case", list(_bad_cases()))
def test_invalid_files_raise_with_path(tmp_path, case):
    a, msg = _bad_cases()[case]
    path = _write(tmp_path / f"{case}.csv", a)
    with pytest.raises(RuleMatrixError, match=msg) as e:
        RM.load_rule_matrix(path)
    assert str(path) in str(e.value) and "Fix:" in str(e.value)


def test_missing_file(tmp_path):
    path = tmp_path / "none.csv"
    with pytest.raises(RuleMatrixError, match="file not found") as e:
        RM.load_rule_matrix(path)
    assert str(path) in str(e.value)


def test_validate_in_memory_and_save_refuses_bad(tmp_path):
    with pytest.raises(RuleMatrixError, match=r"found \(3, 3\)"):
        RM.validate_rule_matrix(np.eye(3), "mine")
    bad = _good()
    bad[0, 1] = -0.2
    bad[1, 0] = -0.2
    with pytest.raises(RuleMatrixError, match="outside"):
        RM.save_rule_matrix(bad, tmp_path / "x.csv")
    assert not (tmp_path / "x.csv").exists()


def test_semicolon_matrix_error_is_short_and_names_the_separator(tmp_path):
    """Issue 24: a semicolon-separated matrix gets a one-line error naming the separator, not the
    whole 5 KB row."""
    from utils.rule_matrix import RuleMatrixError, load_rule_matrix
    p = tmp_path / "rules.csv"
    p.write_text("\n".join(";".join(["0.5"] * 230) for _ in range(230)))
    with pytest.raises(RuleMatrixError) as exc:
        load_rule_matrix(p)
    msg = str(exc.value)
    assert "rules.csv" in msg and "separated by ';'" in msg and "Fix" in msg
    assert len(msg) < 400 and "\n" not in msg
