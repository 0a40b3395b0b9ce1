"""Reflection families and exact lattice augmentation against pymatgen, the independent reference.

For structures of every crystal system (including Laue classes 4/m, -3, 6/m and m-3, where hkl
and khl are different families that coincide in every cell of the system), the pattern that lattice
augmentation computes for a strained cell must equal pymatgen's XRDCalculator pattern of the
strained structure: positions within 1e-3°, intensities of peaks >= 1 % of the maximum within 2 %.
"""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pymatgen")
from pymatgen.core import Lattice, Structure  # noqa: E402

from datasets.rendering.lattice_aug import LatticeAugment, family_sticks, free_angles, strain_cell  # noqa: E402
from datasets.synthesis.reflections import (  # noqa: E402
    form_factor_table,
    merge_coincident,
    pymatgen_peaks,
    reflection_families,
    structure_peaks,
)
from utils.crystal import SG_TO_CS  # noqa: E402

# (space group, cell, [(element, fractional coordinates of one Wyckoff representative)])
STRUCTURES = {
    "triclinic P-1": (2, (5.1, 6.3, 7.2, 82.0, 97.0, 104.0),
                      [("Ca", (0.11, 0.23, 0.37)), ("O", (0.41, 0.17, 0.83)), ("Si", (0.0, 0.5, 0.5))]),
    "monoclinic P2_1/c": (14, (5.4, 9.1, 7.7, 90, 107.3, 90),
                          [("Fe", (0.13, 0.21, 0.09)), ("O", (0.31, 0.44, 0.27)), ("P", (0.72, 0.1, 0.4))]),
    "orthorhombic Pnma": (62, (10.2, 6.0, 4.7, 90, 90, 90),
                          [("Mg", (0.0, 0.0, 0.0)), ("Si", (0.09, 0.25, 0.43)), ("O", (0.16, 0.03, 0.28))]),
    "tetragonal P4/m": (83, (6.7, 6.7, 4.1, 90, 90, 90),
                        [("Ba", (0.21, 0.37, 0.0)), ("Ti", (0.0, 0.0, 0.5)), ("O", (0.33, 0.12, 0.5))]),
    "trigonal R-3m (hex axes)": (166, (4.9, 4.9, 16.8, 90, 90, 120),
                                 [("Li", (0, 0, 0)), ("Co", (0, 0, 0.5)), ("O", (0, 0, 0.26))]),
    "trigonal P-3": (147, (7.3, 7.3, 5.2, 90, 90, 120),
                     [("Zn", (0.31, 0.12, 0.21)), ("Cl", (1 / 3, 2 / 3, 0.4)), ("Na", (0, 0, 0.5))]),
    "hexagonal P6/m": (175, (9.4, 9.4, 6.9, 90, 90, 120),
                       [("Ca", (0.24, 0.0, 0.0)), ("P", (0.37, 0.39, 0.5)), ("O", (0.48, 0.33, 0.5))]),
    "cubic Pa-3": (205, (5.4, 5.4, 5.4, 90, 90, 90), [("Fe", (0, 0, 0)), ("S", (0.385, 0.385, 0.385))]),
    "cubic Fm-3m": (225, (5.64, 5.64, 5.64, 90, 90, 90), [("Na", (0, 0, 0)), ("Cl", (0.5, 0.5, 0.5))]),
}


def _structure(name: str, cell=None) -> Structure:
    sg, c, sites = STRUCTURES[name]
    lat = Lattice.from_parameters(*(cell if cell is not None else c))
    return Structure.from_spacegroup(sg, lat, [e for e, _ in sites], [x for _, x in sites])


def _compare(ours: tuple[np.ndarray, np.ndarray], ref: tuple[np.ndarray, np.ndarray], label: str) -> None:
    # Peaks closer than the position tolerance are one peak in any measurement: merge them in both
    # lists alike, so that how each code bins near-coincident reflections does not matter.
    tt, it = merge_coincident(*(np.asarray(a, np.float64) for a in ours), tol=5e-4)
    pt, pi = merge_coincident(*(np.asarray(a, np.float64) for a in ref), tol=5e-4)
    strong = pi >= 1.0
    assert strong.sum() >= 3, label
    j = np.clip(np.searchsorted(tt, pt[strong]), 1, len(tt) - 1)
    j = np.where(np.abs(tt[j - 1] - pt[strong]) < np.abs(tt[j] - pt[strong]), j - 1, j)
    np.testing.assert_allclose(tt[j], pt[strong], atol=1e-3, rtol=0, err_msg=label)
    np.testing.assert_allclose(it[j], pi[strong], rtol=0.02, err_msg=label)
    # and no strong peak of ours is missing from pymatgen's list
    k = np.clip(np.searchsorted(pt, tt[it >= 1.0]), 1, len(pt) - 1)
    gap = np.minimum(np.abs(pt[k - 1] - tt[it >= 1.0]), np.abs(pt[k] - tt[it >= 1.0]))
    assert gap.max() < 1e-3, label


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_unstrained_sticks_equal_pymatgen(name):
    s = _structure(name)
    _compare(structure_peaks(s), pymatgen_peaks(s), name)


@pytest.mark.parametrize("name", list(STRUCTURES))
@pytest.mark.parametrize("draw", range(3))
def test_strained_cell_equals_pymatgen_of_strained_structure(name, draw):
    sg = STRUCTURES[name][0]
    cs = int(SG_TO_CS[sg - 1])
    s = _structure(name)
    fam = reflection_families(s)
    rng = np.random.default_rng([draw, sg])
    new = strain_cell(fam["cell"], cs, rng, strain=0.08, angle_deg=4.0)
    assert not np.allclose(new, fam["cell"]), "the draw must change the cell"
    ff = form_factor_table()[fam["z"].astype(np.int64)]
    tt, it = family_sticks(fam["hkl"], fam["mult"], fam["sf"], fam["z"], ff, new, 1.5406, (5.0, 90.0))
    ours = merge_coincident(tt.astype(np.float64), it.astype(np.float64))
    ref = pymatgen_peaks(_structure(name, new))
    _compare(ours, ref, f"{name} strained to {np.round(new, 3)}")


@pytest.mark.parametrize("name", list(STRUCTURES))
def test_families_partition_the_sphere(name):
    """Multiplicities sum to the number of reflections in the sphere, and members of one family
    (h·W for the Laue group's W) have the representative's d in the original cell."""
    s = _structure(name)
    fam = reflection_families(s, g_margin=1.0)
    g_max = 2 * np.sin(np.radians(45.0)) / 1.5406
    recip = s.lattice.reciprocal_lattice_crystallographic
    n_pts = sum(1 for p in recip.get_points_in_sphere([[0, 0, 0]], [0, 0, 0], g_max) if p[1] > 1e-9)
    assert int(fam["mult"].astype(np.int64).sum()) == n_pts
    assert np.all(fam["mult"] % 2 == 0)  # Friedel pairs are always in one family


@pytest.mark.parametrize("cs,cell", [(6, (5.0, 5.0, 5.0, 90, 90, 90)), (3, (4.0, 4.0, 7.0, 90, 90, 90)),
                                     (4, (4.0, 4.0, 9.0, 90, 90, 120)), (2, (4, 5, 6, 90, 90, 90)),
                                     (1, (4, 5, 6, 90, 101, 90)), (0, (4, 5, 6, 80, 95, 101))])
def test_strain_keeps_the_crystal_system(cs, cell):
    rng = np.random.default_rng(0)
    cell = np.asarray(cell, float)
    for _ in range(50):
        new = strain_cell(cell, cs, rng, 0.1, 5.0)
        r = new[:3] / cell[:3]
        assert np.all(np.abs(np.log(r)) <= np.log(1.1) + 1e-12)
        if cs == 6:
            assert np.allclose(r, r[0])
        if cs in (3, 4, 5):
            assert np.isclose(r[0], r[1])
        fixed = [k for k in (3, 4, 5) if k not in free_angles(cell, cs)]
        assert np.allclose(new[fixed], cell[fixed])
        assert np.all(np.abs(new[3:] - cell[3:]) <= 5.0 + 1e-9)


def test_lattice_augment_is_seeded_and_respects_the_range():
    s = _structure("orthorhombic Pnma")
    fam = reflection_families(s)
    item = {**fam, "ff": form_factor_table()[fam["z"].astype(np.int64)], "y_cs": 2}
    aug = LatticeAugment(strain=0.05, angle_deg=0.0, two_theta_range=(10.0, 80.0), min_rel=0.01)
    a, b, c = (aug.sticks(item, seed, 1.5406) for seed in (1, 1, 2))
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])
    for tt, it in (a, c):
        assert tt.min() >= 10.0 and tt.max() <= 80.0
        assert it.max() == pytest.approx(100.0) and it.min() >= 1.0
