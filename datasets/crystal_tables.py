"""Generate the crystallographic reference tables shipped in ``utils/data`` from pyxtal and spglib.

    python -m datasets.crystal_tables            # (re)write utils/data/space_groups.csv, ...
    python -m datasets.crystal_tables --check    # regenerate in memory, compare with the shipped files

The framework reads the shipped files with numpy/stdlib only (``utils.crystal``,
``utils.rule_matrix``); this generator is the only place that needs pyxtal/spglib. It writes:

- ``space_groups.csv``: one row per space group 1..230 in its ITA standard setting (monoclinic
  unique axis b, cell choice 1; origin choice 2; hexagonal axes for R groups; the Hall number is
  pyxtal's ``Group(n).hall_number``): Hermann–Mauguin short and full symbols (spglib spelling,
  screw axes as ``2_1``, bars as ``-``), Schoenflies symbol, crystal system, point group, Laue
  class (the point group of the rotations R ∪ −R, identified among the 11 centrosymmetric point
  groups by their rotation sets), centring letter, Bravais lattice (A/B/C-centred → ``C``),
  extinction group (copied from ``sg_extinction_groups.csv``), number of operations in the
  conventional cell, point-group order, Hall number.
- ``sg_maximal_subgroups.json``: maximal translationengleiche (``t``) and klassengleiche (``k``,
  isomorphic ones excluded) subgroup types of each group, from pyxtal's ``t_subgroup.json`` and
  ``k_subgroup.json`` (International Tables vol. A1).
- ``sg_symops.json``: symmetry operations as canonical ``x,y,z`` strings: ``centring`` vectors and
  ``coset`` representatives in the ITA standard setting (ITA's own representatives, as listed by
  pyxtal's general position), and ``seed_coset``: the representatives in the settings the original
  method's rule matrix evidently used (monoclinic unique axis c, origin choice 1, rhombohedral
  axes; see ``utils.rule_matrix``), given only where they differ from ``coset``.

Every derived quantity is cross-checked between pyxtal and spglib (operation sets, counts).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from utils.crystal import CRYSTAL_SYSTEMS, DATA_DIR, SG_TO_CS, extinction_groups

N_SG = 230
FILES = ("space_groups.csv", "sg_maximal_subgroups.json", "sg_symops.json")
CSV_FIELDS = ("number", "symbol", "symbol_full", "schoenflies", "crystal_system", "point_group",
              "laue_class", "centring", "bravais_lattice", "extinction_group", "n_ops",
              "point_group_order", "hall_number")
_FAMILY_LETTER = {"triclinic": "a", "monoclinic": "m", "orthorhombic": "o", "tetragonal": "t",
                  "trigonal": "h", "hexagonal": "h", "cubic": "c"}


# ---------------------------------------------------------------- operations as strings
def _fraction(t: float) -> Fraction:
    f = Fraction(float(t) % 1.0).limit_denominator(12)
    return Fraction(0) if f == 1 else f


def op_to_xyz(rot: np.ndarray, trans: np.ndarray) -> str:
    """Canonical ``x,y,z`` string of (W, w): no spaces, variables in x,y,z order, translation last
    and reduced to [0, 1), e.g. ``-x+y,-x,z+1/3``."""
    rows = []
    for i in range(3):
        s = ""
        for c, v in zip(np.rint(rot[i]).astype(int), "xyz"):
            if c:
                s += ("-" if c < 0 else ("+" if s else "")) + ("" if abs(c) == 1 else str(abs(c))) + v
        f = _fraction(trans[i])
        rows.append(s + (f"+{f}" if f else ""))
    return ",".join(rows)


def _vector(t: np.ndarray) -> str:
    """A translation as ``1/2,1/2,0``."""
    return ",".join(str(_fraction(x)) for x in t)


def _key(rot: np.ndarray, trans: np.ndarray) -> tuple:
    return tuple(np.rint(rot).astype(int).ravel()) + tuple(_fraction(t) for t in trans)


def _spglib_ops(hall: int) -> tuple[np.ndarray, np.ndarray]:
    import spglib

    d = spglib.get_symmetry_from_database(hall)
    return np.asarray(d["rotations"]), np.asarray(d["translations"]) % 1.0


def _pyxtal_ops(number: int) -> tuple[np.ndarray, np.ndarray]:
    from pyxtal.symmetry import Group

    ops = Group(number)[0].ops  # general position in ITA order
    return (np.array([o.rotation_matrix for o in ops]), np.array([o.translation_vector for o in ops]) % 1.0)


def coset_reps_min_translation(rot: np.ndarray, trans: np.ndarray) -> list[str]:
    """One operation per distinct rotation: the one with the fewest non-zero translation
    components, the first listed on ties (the convention that reproduces the seed's matrix)."""
    best: dict[tuple, tuple[int, int]] = {}
    for i, (r, t) in enumerate(zip(rot, trans)):
        k = tuple(np.rint(r).astype(int).ravel())
        nz = sum(1 for x in t if _fraction(x) != 0)
        if k not in best or nz < best[k][0]:
            best[k] = (nz, i)
    return [op_to_xyz(rot[i], trans[i]) for _, i in best.values()]


def _seed_halls() -> dict[int, int]:
    """Hall numbers of the non-standard settings the seed's matrix used (first of each kind)."""
    import spglib

    out: dict[int, int] = {}
    for h in range(1, 531):
        t = spglib.get_spacegroup_type(h)
        if t.number in out:
            continue
        if (3 <= t.number <= 15 and t.choice in ("c", "c1")) or t.choice in ("1", "R"):
            out[t.number] = h
    return out


# ---------------------------------------------------------------- tables
def _laue_lookup(rotsets: dict[int, frozenset], point_groups: dict[int, str]) -> dict[frozenset, str]:
    minus_i = tuple((-np.eye(3, dtype=int)).ravel())
    return {rs: point_groups[n] for n, rs in rotsets.items() if minus_i in rs}


def _laue(rs: frozenset, lookup: dict[frozenset, str], number: int) -> str:
    closed = frozenset(rs | {tuple(-x for x in r) for r in rs})
    if closed not in lookup:
        raise RuntimeError(f"space group {number}: R ∪ -R matches no centrosymmetric group")
    return lookup[closed]


def build_tables() -> dict[str, str]:
    """Compute the three files' contents (text) from pyxtal and spglib."""
    import spglib
    from pyxtal.symmetry import Group

    ext = extinction_groups()
    seed_halls = _seed_halls()
    rows, subgroups, symops = [], {}, {}
    rotsets, pgs, stds = {}, {}, {}
    for n in range(1, N_SG + 1):
        g = Group(n)
        t = spglib.get_spacegroup_type(g.hall_number)
        if t.number != n:
            raise RuntimeError(f"pyxtal Hall number {g.hall_number} is group {t.number}, not {n}")
        rot, trans = _pyxtal_ops(n)
        srot, strans = _spglib_ops(g.hall_number)
        if {_key(r, w) for r, w in zip(rot, trans)} != {_key(r, w) for r, w in zip(srot, strans)}:
            raise RuntimeError(f"space group {n}: pyxtal and spglib operations differ")
        centring = [trans[i] for i in range(len(rot)) if np.allclose(rot[i], np.eye(3))]
        n_coset = len(rot) // len(centring)
        coset = [op_to_xyz(rot[i], trans[i]) for i in range(n_coset)]
        if len({tuple(np.rint(r).astype(int).ravel()) for r in rot[:n_coset]}) != n_coset:
            raise RuntimeError(f"space group {n}: the first {n_coset} listed operations are not coset reps")
        rotsets[n] = frozenset(tuple(np.rint(r).astype(int).ravel()) for r in rot[:n_coset])
        pgs[n] = t.pointgroup_international
        stds[n] = (g, t, len(rot), n_coset)
        seed_rot, seed_trans = _spglib_ops(seed_halls[n]) if n in seed_halls else (rot, trans)
        seed = coset_reps_min_translation(seed_rot, seed_trans)
        entry = {"hall": g.hall_number, "centring": [_vector(c) for c in centring],
                 "coset": coset}
        if seed != coset:
            entry["seed_hall"] = seed_halls.get(n, g.hall_number)
            entry["seed_coset"] = seed
        symops[str(n)] = entry
        tk = g.get_max_t_subgroup()["subgroup"]
        kk = g.get_max_k_subgroup()["subgroup"]
        subgroups[str(n)] = {"t": sorted({int(s) for s in tk}), "k": sorted({int(s) for s in kk} - {n})}
    lookup = _laue_lookup(rotsets, pgs)
    for n in range(1, N_SG + 1):
        g, t, n_ops, n_coset = stds[n]
        cs = CRYSTAL_SYSTEMS[int(SG_TO_CS[n - 1])]
        letter = t.international_short[0]
        rows.append({"number": n, "symbol": t.international_short, "symbol_full": t.international_full,
                     "schoenflies": t.schoenflies, "crystal_system": cs, "point_group": pgs[n],
                     "laue_class": _laue(rotsets[n], lookup, n), "centring": letter,
                     "bravais_lattice": _FAMILY_LETTER[cs] + ("C" if letter in "ABC" else letter),
                     "extinction_group": int(ext[n - 1]), "n_ops": n_ops, "point_group_order": n_coset,
                     "hall_number": g.hall_number})
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    return {"space_groups.csv": buf.getvalue(), "sg_maximal_subgroups.json": _json_lines(subgroups),
            "sg_symops.json": _json_lines(symops)}


def _json_lines(d: dict) -> str:
    """One group per line: small diffs when a table changes."""
    body = ",\n".join(f"{json.dumps(k)}: {json.dumps(v, separators=(',', ':'))}" for k, v in d.items())
    return "{\n" + body + "\n}\n"


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def check_tables(tables: dict[str, str], out: Path = DATA_DIR) -> list[str]:
    """Names of the shipped files that differ from ``tables`` (or are missing)."""
    return [f for f in FILES if not (out / f).exists() or (out / f).read_text() != tables[f]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=DATA_DIR, help="folder to write (default: utils/data)")
    p.add_argument("--check", action="store_true", help="only compare with the files in --out")
    args = p.parse_args(argv)
    tables = build_tables()
    if args.check:
        bad = check_tables(tables, args.out)
        print("tables up to date" if not bad else f"out of date: {bad}")
        return 1 if bad else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        _write_atomic(args.out / name, text)
        print(f"wrote {args.out / name} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
