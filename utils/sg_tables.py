"""Space-group reference tables without torch: SG → crystal system, enantiomorphs, extinction
groups, Hermann–Mauguin symbols, symmetry operations, subgroups.

numpy and the standard library only, so that torch-free packages (``indexing/``) can use them;
``utils.crystal`` re-exports every name here next to its tensor helpers. Conventions
(docs/DATA.md): on disk space groups are International Tables numbers 1..230; inside arrays they
are 0..229. Crystal systems are 0..6 in the order of ``CRYSTAL_SYSTEMS``.
"""

from __future__ import annotations

import csv
import json
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import numpy as np

N_SG = 230
N_CS = 7
CRYSTAL_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal",
                   "hexagonal", "cubic")
# Last space-group number (1-based, inclusive) of each crystal system.
_CS_LAST_SG = (2, 15, 74, 142, 167, 194, 230)

# Enantiomorphic pairs (1-based): identical powder patterns by Friedel's law.
ENANTIOMORPH_PAIRS = ((76, 78), (91, 95), (92, 96), (144, 145), (151, 153), (152, 154),
                      (169, 170), (171, 172), (178, 179), (180, 181), (212, 213))

DATA_DIR = Path(__file__).resolve().parent / "data"


def sg_to_cs_number(sg: int) -> int:
    """Crystal-system index (0..6) of a 1-based space-group number."""
    if not 1 <= int(sg) <= N_SG:
        raise ValueError(f"space group {sg} is outside 1..230")
    for cs, last in enumerate(_CS_LAST_SG):
        if sg <= last:
            return cs
    raise AssertionError("unreachable")


# SG_TO_CS[i] is the crystal system of the 0-based space-group index i.
SG_TO_CS = np.array([sg_to_cs_number(s) for s in range(1, N_SG + 1)], dtype=np.int64)

def enantiomorph_partner() -> np.ndarray:
    """(230,) int: the 0-based partner of each space group (itself when it has none)."""
    partner = np.arange(N_SG)
    for a, b in ENANTIOMORPH_PAIRS:
        partner[a - 1], partner[b - 1] = b - 1, a - 1
    return partner


@lru_cache(maxsize=1)
def extinction_groups() -> np.ndarray:
    """(230,) int: extinction group (1..99) of each 0-based space group.

    Source: ``data/sg_extinction_groups.csv``, the lookup table published with "Attention Is Not
    All You Need for Diffraction" (arXiv 2604.23811, scattering/paper-ai-diffraction,
    assets/lookups). Groups sharing an extinction group have the same systematic absences.
    """
    out = np.zeros(N_SG, dtype=np.int64)
    with open(DATA_DIR / "sg_extinction_groups.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            out[int(row["space_group"]) - 1] = int(row["extinction_group"])
    return out


# ---------------------------------------------------------------------------------------------
# Reference tables generated once from pyxtal/spglib by ``python -m datasets.crystal_tables`` and
# shipped in ``data/`` (read here with the stdlib only). Functions take 1-based numbers 1..230.
# ---------------------------------------------------------------------------------------------
_INT_COLUMNS = ("number", "extinction_group", "n_ops", "point_group_order", "hall_number")


def _check_number(sg: int) -> int:
    if isinstance(sg, bool) or not 1 <= int(sg) <= N_SG:
        raise ValueError(f"space group {sg!r} is outside 1..230")
    return int(sg)


@lru_cache(maxsize=1)
def space_group_table() -> tuple[dict[str, object], ...]:
    """The 230 rows of ``data/space_groups.csv`` (row ``n-1`` is space group n), integers typed.

    Columns: number, symbol (HM short, spglib spelling: ``P2_1/c``, ``Fm-3m``), symbol_full,
    schoenflies, crystal_system, point_group, laue_class, centring (P, A, C, I, F, R),
    bravais_lattice (aP mP mC oP oC oF oI tP tI hP hR cP cI cF), extinction_group (1..99),
    n_ops (operations in the conventional cell), point_group_order, hall_number (spglib's, of the
    ITA standard setting: unique axis b, origin choice 2, hexagonal axes).
    """
    with open(DATA_DIR / "space_groups.csv", newline="") as fh:
        rows = [{k: (int(v) if k in _INT_COLUMNS else v) for k, v in r.items()} for r in csv.DictReader(fh)]
    if [r["number"] for r in rows] != list(range(1, N_SG + 1)):
        raise ValueError(f"{DATA_DIR / 'space_groups.csv'}: expected rows 1..230 in order. "
                         "Fix: regenerate with `python -m datasets.crystal_tables`")
    return tuple(rows)


def sg_column(name: str) -> np.ndarray:
    """(230,) array of one ``space_groups.csv`` column, indexed by the 0-based space group."""
    rows = space_group_table()
    if name not in rows[0]:
        raise KeyError(f"unknown column {name!r}; valid: {sorted(rows[0])}")
    return np.array([r[name] for r in rows])


def sg_symbol(sg: int, full: bool = False) -> str:
    """Hermann–Mauguin symbol of space group ``sg`` (1..230): ``P2_1/c`` (or ``P 1 2_1/c 1``)."""
    return str(space_group_table()[_check_number(sg) - 1]["symbol_full" if full else "symbol"])


def sg_number(symbol: str) -> int:
    """Inverse of :func:`sg_symbol`; spaces and underscores are ignored (``P21/c`` → 14)."""
    def norm(s: str) -> str:
        return s.replace(" ", "").replace("_", "")
    for r in space_group_table():
        if norm(symbol) in (norm(str(r["symbol"])), norm(str(r["symbol_full"]))):
            return int(r["number"])
    raise KeyError(f"unknown space-group symbol {symbol!r}")


def point_group(sg: int) -> str:
    """Crystallographic point group (international symbol, e.g. ``2/m``) of space group ``sg``."""
    return str(space_group_table()[_check_number(sg) - 1]["point_group"])


def laue_class(sg: int) -> str:
    """Laue class (one of the 11 centrosymmetric point groups) of space group ``sg``."""
    return str(space_group_table()[_check_number(sg) - 1]["laue_class"])


def centring(sg: int) -> str:
    """Lattice-centring letter of the standard setting (P, A, C, I, F, R)."""
    return str(space_group_table()[_check_number(sg) - 1]["centring"])


def bravais_lattice(sg: int) -> str:
    """Bravais lattice (Pearson-style, A/B/C-centred written ``C``): ``mP``, ``oC``, ``hR``..."""
    return str(space_group_table()[_check_number(sg) - 1]["bravais_lattice"])


@lru_cache(maxsize=1)
def _subgroup_table() -> dict[str, dict[str, list[int]]]:
    with open(DATA_DIR / "sg_maximal_subgroups.json") as fh:
        return json.load(fh)


def maximal_subgroups(sg: int, kind: str = "tk") -> tuple[int, ...]:
    """Space-group types of the maximal subgroups of ``sg`` (sorted, 1-based).

    Args:
        sg: space group 1..230.
        kind: ``"t"`` (translationengleiche), ``"k"`` (klassengleiche, isomorphic ones excluded)
            or ``"tk"`` (both). Source: pyxtal's tables (International Tables vol. A1).
    """
    if kind not in ("t", "k", "tk"):
        raise ValueError(f"kind must be 't', 'k' or 'tk', got {kind!r}")
    entry = _subgroup_table()[str(_check_number(sg))]
    return tuple(sorted({s for k in kind for s in entry[k]}))


@lru_cache(maxsize=1)
def _symop_table() -> dict[str, dict[str, object]]:
    with open(DATA_DIR / "sg_symops.json") as fh:
        return json.load(fh)


def symmetry_operations(sg: int, setting: str = "standard", centred: bool = False) -> tuple[str, ...]:
    """Symmetry operations of ``sg`` as canonical ``x,y,z`` strings (e.g. ``-x,y+1/2,-z+1/2``).

    Args:
        sg: space group 1..230.
        setting: ``"standard"``: ITA standard setting and ITA's coset representatives;
            ``"seed"``: the settings and representatives the original method's rule matrix used
            (monoclinic unique axis c, origin choice 1, rhombohedral axes; fewest non-zero
            translation components), see ``utils.rule_matrix``.
        centred: ``False``: coset representatives only (one per point-group operation, as the
            ITA lists them under ``(0,0,0)+``); ``True`` (standard setting only): all operations
            of the conventional cell, representatives × centring vectors.
    """
    entry = _symop_table()[str(_check_number(sg))]
    if setting == "seed":
        if centred:
            raise ValueError("centred=True is only available for setting='standard'")
        return tuple(entry.get("seed_coset", entry["coset"]))
    if setting != "standard":
        raise ValueError(f"setting must be 'standard' or 'seed', got {setting!r}")
    if not centred:
        return tuple(entry["coset"])
    return tuple(_add_translation(op, c) for c in entry["centring"] for op in entry["coset"])


def _add_translation(op: str, vector: str) -> str:
    """``op`` followed by the translation ``vector`` (``1/2,1/2,0``), reduced modulo 1."""
    out = []
    for row, add in zip(op.split(","), vector.split(",")):
        # op_to_xyz writes the translation last, as '+p/q' in [0, 1); linear coefficients are ±1
        lin, t = row.rsplit("+", 1) if "/" in row else (row, "0")
        total = (Fraction(t) + Fraction(add)) % 1
        out.append(lin + (f"+{total}" if total else ""))
    return ",".join(out)
