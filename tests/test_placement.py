"""The fast Wyckoff placer: exact space group, orbit sizes, distances, determinism, lattices."""

from __future__ import annotations

import numpy as np
import pytest

from datasets.synthesis.placement import (
    draw_cell,
    lattice_type,
    pair_tolerances,
    place_atoms,
    site_ops,
)
from datasets.synthesis.plan import load_mp_table
from datasets.synthesis.structures import (
    GENERATOR_VERSION,
    SYMPREC,
    generate_structure,
    mp_table_path,
    wyckoff_sites,
)

# all seven crystal systems, centred cells, special positions (2 triclinic, 14 monoclinic,
# 62 orthorhombic, 139 tetragonal I, 166 trigonal R, 194 hexagonal, 225/227 cubic F)
GROUPS = (2, 14, 62, 139, 166, 194, 225, 227)
ELEMENTS = ("O", "Mg", "Si", "Fe", "Na", "Cl", "Ti", "Ba", "S", "Al")


@pytest.fixture(scope="module")
def table():
    return load_mp_table(mp_table_path())


def _rows(table, sg: int, k: int = 3, max_atoms: int = 40) -> list[str]:
    """The ``k`` most frequent MP rows of ``sg`` with at most ``max_atoms`` atoms."""
    idx = np.flatnonzero((table["spg"] == sg) & (table["n_atoms"] <= max_atoms))
    idx = idx[np.argsort(-table["count"][idx], kind="stable")][:k]
    return [str(table["wps"][i]) for i in idx]


def _spglib_number(matrix, frac, z) -> int:
    import spglib

    ds = spglib.get_symmetry_dataset((matrix, frac, z), symprec=SYMPREC)
    return int(ds.number) if ds is not None else 0


def _min_distances_ok(placed, symbols, tol_factor) -> bool:
    """Independent check with pymatgen's periodic distance matrix."""
    from pymatgen.core import Lattice, Structure

    s = Structure(Lattice(placed.matrix), [symbols[k] for k in placed.kinds], placed.frac)
    d = s.distance_matrix
    tol = pair_tolerances(tuple(symbols), tol_factor)[placed.kinds][:, placed.kinds]
    np.fill_diagonal(d, np.inf)
    return bool(np.all(d >= tol - 1e-9))


def _checker(sg: int, z: np.ndarray):
    """``accept`` hook: None when spglib finds exactly ``sg``."""
    def check(p):
        found = _spglib_number(p.matrix, p.frac, z[p.kinds])
        return None if found == sg else f"sg {found}"
    return check


@pytest.mark.parametrize("sg", GROUPS)
def test_placed_rows_keep_group_orbits_and_distances(table, sg):
    from pymatgen.core.periodic_table import Element

    for r, wps in enumerate(_rows(table, sg)):
        index = [int(t) for t in wps.split("-")]
        n_el = min(len(index), len(ELEMENTS))
        elem = [i % n_el for i in range(len(index))]   # distinct elements where possible
        symbols = list(ELEMENTS[:n_el])
        z = np.array([Element(s).Z for s in symbols])
        kw = {"tol_factor": 0.9, "volume_factor": 1.2, "accept": _checker(sg, z)}
        p = place_atoms(np.random.default_rng([sg, r]), sg, index, elem, symbols, **kw)
        assert _spglib_number(p.matrix, p.frac, z[p.kinds]) == sg
        # atoms per element = the sites' multiplicities (every orbit has exactly m distinct atoms)
        mult = np.bincount(elem, weights=[m for _, m in wyckoff_sites(sg, wps)], minlength=n_el)
        assert np.array_equal(np.bincount(p.kinds, minlength=n_el), mult)
        assert np.all((p.frac >= 0) & (p.frac < 1))
        assert _min_distances_ok(p, symbols, 0.9)
        # deterministic for a seed
        q = place_atoms(np.random.default_rng([sg, r]), sg, index, elem, symbols, **kw)
        assert np.array_equal(p.frac, q.frac) and np.array_equal(p.cell, q.cell)


@pytest.mark.parametrize("sg", GROUPS)
def test_generate_structure_fast_is_exact_and_deterministic(table, sg):
    for r, wps in enumerate(_rows(table, sg, k=2)):
        a = generate_structure(sg, wps, np.random.default_rng([5, sg, r]), tol_factor=0.9, volume_factor=1.2)
        b = generate_structure(sg, wps, np.random.default_rng([5, sg, r]), tol_factor=0.9, volume_factor=1.2)
        assert a.ok and a.placer == "fast", a.errors
        cell, frac, z = a.arrays()
        assert len(z) == sum(m for _, m in wyckoff_sites(sg, wps))
        assert a.structure.get_space_group_info(symprec=SYMPREC)[1] == sg
        assert a.formula == b.formula and a.lattice == b.lattice and np.array_equal(frac, b.frac)


def test_array_sticks_with_the_checks_rotations_equal_the_structure_path(table):
    from datasets.synthesis.reflections import peaks_of_arrays, structure_peaks

    for sg in (14, 166, 227):
        r = generate_structure(sg, _rows(table, sg)[0], np.random.default_rng(sg))
        cell, frac, z = r.arrays()
        tt, it = peaks_of_arrays(cell, frac, z, rotations=r.rotations)
        t2, i2 = structure_peaks(r.structure)
        assert len(tt) > 5 and np.allclose(tt, t2, atol=1e-4) and np.allclose(it, i2, atol=1e-3)


def test_pyxtal_placer_still_available():
    r = generate_structure(225, "9-10-11", np.random.default_rng(3), placer="pyxtal")
    assert r.ok and r.placer == "pyxtal" and r.frac is None and len(r.arrays()[2]) == 16
    with pytest.raises(ValueError):
        generate_structure(225, "11", np.random.default_rng(3), placer="nope")
    assert GENERATOR_VERSION >= 5


@pytest.mark.parametrize("sg", GROUPS)
def test_cells_have_the_volume_and_the_lattice_type(sg):
    rng = np.random.default_rng(sg)
    lt = lattice_type(sg)
    for _ in range(20):
        a, b, c, al, be, ga = draw_cell(rng, lt, 500.0)
        ca, cb, cg = np.cos(np.radians([al, be, ga]))
        vol = a * b * c * np.sqrt(1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg)
        assert vol == pytest.approx(500.0, rel=1e-9)
        if lt in ("tetragonal", "hexagonal", "trigonal", "cubic"):
            assert a == pytest.approx(b)
        if lt != "triclinic":
            assert al == pytest.approx(90) and (be == pytest.approx(90) or lt == "monoclinic")
        if lt in ("hexagonal", "trigonal"):
            assert ga == pytest.approx(120)


def test_orbits_of_generic_points_have_the_multiplicity():
    from datasets.synthesis.placement import pyxtal_group

    rng = np.random.default_rng(0)
    for sg in GROUPS:
        g = pyxtal_group(sg)
        for i in range(len(g)):
            ops = site_ops(sg, i)
            pt = rng.random(3) @ ops.rot0.T + ops.trans0
            orb = np.einsum("mij,j->mi", ops.rot, pt) + ops.trans
            orb = np.round(orb - np.floor(orb), 6) % 1.0
            assert len(ops.rot) == g[i].multiplicity == len(np.unique(orb, axis=0)), (sg, i)
