"""Reflection families and structure-factor sums: what a pattern needs to be re-rendered in any
cell of the same crystal system (lattice augmentation), and the sticks of a structure.

A crystal is a cell plus fractional coordinates. For every reflection h = (hkl) inside the
limiting sphere we keep, per *family* of symmetry-equivalent reflections (the orbit of h under the
Laue group, i.e. the point-group rotations and −1), one representative h, the multiplicity and,
per element e, the complex sum S_e(h) = Σ_{j∈e} occ_j exp(2πi h·x_j). Equivalent reflections have
equal |F|² (no anomalous dispersion) and equal d in every cell that keeps the crystal system, so
in a strained cell the family's integrated intensity is

    I = mult · |Σ_e f_e(s) S_e(h)|² · LP(θ),   s = sin θ / λ = 1 / (2d),

with new d-spacings, new Lorentz–polarisation and new form factors
(``datasets.rendering.physics.family_intensities``). Families are kept apart even when they
coincide in this cell (e.g. (300) and (221) of a cubic cell, or hkl and khl in Laue class 4/m):
peaks that overlap in one cell separate in another.

The same computation gives the sticks of the unstrained structure, replacing pymatgen's
``XRDCalculator`` in the simulator (vectorised over all hkl at once; ``tests/test_reflections.py``
checks equality with pymatgen for all seven crystal systems).
"""

from __future__ import annotations

import json
import os
import warnings
from functools import cache

import numpy as np

from datasets.rendering.lattice_aug import family_sticks
from datasets.rendering.physics import (
    MAX_Z,
    N_FF_TERMS,
    family_intensities,
    inv_d2,
    lattice_matrix,
    reciprocal_metric,
)

# Families are enumerated up to a reciprocal radius this much larger than the data's 2θ range
# needs, so that lattice augmentation may shrink a cell by up to ~1/G_MARGIN − 1 (13 %) and still
# find every reflection that enters the range.
G_MARGIN = 1.15
SYMPREC = 0.01


@cache
def form_factor_table() -> np.ndarray:
    """(MAX_Z + 1, N_FF_TERMS, 2) coefficients (a_k, b_k) per atomic number (zeros: unknown).

    Read from pymatgen's ``atomic_scattering_params.json`` (the parametrisation its XRDCalculator
    uses), so sticks computed here equal pymatgen's; stored with every dataset that carries
    families, so training needs neither pymatgen nor this file.
    """
    import pymatgen.analysis.diffraction.xrd as xrd
    from pymatgen.core.periodic_table import Element

    path = os.path.join(os.path.dirname(xrd.__file__), "atomic_scattering_params.json")
    with open(path) as fh:
        params = json.load(fh)
    table = np.zeros((MAX_Z + 1, N_FF_TERMS, 2), np.float64)
    for sym, pairs in params.items():
        arr = np.asarray(pairs, np.float64)[:N_FF_TERMS]
        table[Element(sym).Z, :len(arr)] = arr
    return table


def laue_rotations(lattice: np.ndarray, frac: np.ndarray, numbers: np.ndarray,
                   symprec: float = SYMPREC) -> np.ndarray:
    """Distinct rotation parts W (n, 3, 3) int of the structure's space group, with −W added.

    In the basis of the given cell; a reflection h (row vector) maps to h·W.
    """
    import spglib

    sym = spglib.get_symmetry((lattice, frac, numbers), symprec=symprec)
    if sym is None:
        raise ValueError("spglib found no symmetry (invalid structure)")
    return laue_of(sym["rotations"])


def laue_of(rotations: np.ndarray) -> np.ndarray:
    """Distinct W and −W (n, 3, 3) int of symmetry rotations (e.g. a spglib dataset's), in
    lexicographic order of their nine entries (as ``np.unique(..., axis=0)`` sorts them)."""
    rows = np.asarray(rotations, np.int64).reshape(-1, 9)
    rows = np.concatenate([rows, -rows])
    lo = int(rows.min(initial=0))
    base = int(rows.max(initial=0)) - lo + 1
    if base ** 9 >= 2 ** 62:  # entries too large for one int64 code (never for crystal rotations)
        return np.unique(rows, axis=0).reshape(-1, 3, 3)
    # one integer per matrix, most significant digit first, so sorting codes sorts rows
    _, first = np.unique((rows - lo) @ (base ** np.arange(8, -1, -1, dtype=np.int64)), return_index=True)
    return rows[first].reshape(-1, 3, 3)


def _hkl_in_sphere(cell: np.ndarray, g_max: float) -> tuple[np.ndarray, np.ndarray]:
    """All h ≠ 0 with 1/d ≤ g_max, (M, 3) int64, and their 1/d² (M,), in (h, k, l) grid order.

    The grid is the box |h| ≤ g_max·a etc. (since h = g·a), but only the l-range of every (h, k)
    column that can reach the sphere (plus one on each side, at a slightly larger radius) is
    evaluated: about half of the box. The final test is ``inv_d2 <= g_max²·(1 + 1e-12)`` on the
    candidates, so the result is the box's.
    """
    lim = np.floor(g_max * np.asarray(cell[:3], np.float64) + 1e-9).astype(np.int64)
    h, k = (a.ravel() for a in np.meshgrid(np.arange(-lim[0], lim[0] + 1), np.arange(-lim[1], lim[1] + 1),
                                           indexing="ij"))
    gs = reciprocal_metric(cell)
    # 1/d² along a column = A l² + 2 B l + C; its l-range inside the sphere (relaxed radius)
    a2, b = gs[2, 2], gs[0, 2] * h + gs[1, 2] * k
    c = gs[0, 0] * h * h + 2.0 * gs[0, 1] * h * k + gs[1, 1] * k * k - g_max * g_max * (1 + 1e-9)
    root = np.sqrt(np.maximum(b * b - a2 * c, 0.0))
    reach = b * b - a2 * c >= 0.0
    lo = np.maximum(np.ceil((-b - root) / a2) - 1, -lim[2]).astype(np.int64)
    hi = np.minimum(np.floor((-b + root) / a2) + 1, lim[2]).astype(np.int64)
    n = np.where(reach, np.maximum(hi - lo + 1, 0), 0)
    start = np.cumsum(n) - n
    col = np.repeat(np.arange(len(n)), n)
    hkl = np.stack([h[col], k[col], lo[col] + np.arange(int(n.sum())) - start[col]], -1)
    hkl = hkl[(hkl[:, 0] | hkl[:, 1] | hkl[:, 2]) != 0]
    q2 = inv_d2(hkl, cell)
    inside = q2 <= g_max * g_max * (1 + 1e-12)
    return hkl[inside], q2[inside]


def _inner(hkl: np.ndarray, q2: np.ndarray, cell: np.ndarray, g_max: float) -> np.ndarray:
    """(M,) bool: the rows of a larger enumeration that ``_hkl_in_sphere(cell, g_max)`` returns
    (same box, same test on the same 1/d² values), so a subset equals a fresh enumeration."""
    lim = np.floor(g_max * np.asarray(cell[:3], np.float64) + 1e-9).astype(np.int64)
    return (q2 <= g_max * g_max * (1 + 1e-12)) & np.all(np.abs(hkl) <= lim, axis=1)


def _orbits(hkl: np.ndarray, rots: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group reflections into orbits under the Laue group ``rots`` (n, 3, 3).

    The canonical member of an orbit is its lexicographically largest h·W. Encoding h·W as the
    base-B number (h·W)·(B², B, 1) (B > 2·max |h·W|, so the order is lexicographic) makes the code
    linear in h: code = h · (W·(B², B, 1)), one (M, 3) × (3, n) product instead of the (M, n, 3)
    orbit array; the canonical member is decoded from the largest code.

    Returns:
        rep (F, 3) int64 canonical members in increasing code order, mult (F,) members present
        in ``hkl``, inverse (M,) the family of every row.
    """
    span = int(np.abs(hkl).max(initial=0)) * 3 + 1  # |h·W| < span for rotations with entries in {-1, 0, 1}
    base = 2 * span + 1
    weights = np.array([base * base, base, 1], np.int64)
    code = hkl @ (np.asarray(rots, np.int64) @ weights).T  # (M, n_ops) int64, exact
    canon, inverse, mult = np.unique(code.max(axis=1), return_inverse=True, return_counts=True)
    digits = canon + span * (base * base + base + 1)  # every base-B digit shifted to [1, 2·span - 1]
    rep = np.stack([digits // (base * base), (digits // base) % base, digits % base], -1) - span
    return rep, mult, inverse.reshape(-1)


def _as_arrays(cell, frac, z_site, occ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    cell = np.asarray(cell, np.float64)
    frac = np.asarray(frac, np.float64).reshape(-1, 3)
    z_site = np.asarray(z_site, np.int64)
    occ = np.ones(len(z_site)) if occ is None else np.asarray(occ, np.float64)
    return cell, frac, z_site, occ


def _g_max(two_theta_max: float, wavelength: float) -> float:
    """Radius 2 sin θ_max / λ of the reflections inside the 2θ range [Å⁻¹]."""
    return 2.0 * np.sin(np.radians(min(float(two_theta_max), 180.0) / 2.0)) / float(wavelength)


def _rotations(cell, frac, z_site, rotations, symprec) -> np.ndarray:
    return laue_rotations(lattice_matrix(cell), frac, z_site, symprec) if rotations is None \
        else laue_of(rotations)


def structure_arrays(structure) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(cell (6,), lattice matrix (3, 3), frac (n, 3), Z (n,), occupancy (n,)) of an ordered or
    disordered pymatgen structure (a disordered site contributes one row per species)."""
    lat = structure.lattice
    cell = np.array([lat.a, lat.b, lat.c, lat.alpha, lat.beta, lat.gamma], np.float64)
    frac, z, occ = [], [], []
    for site in structure:
        for sp, o in site.species.items():
            frac.append(site.frac_coords)
            z.append(sp.Z)
            occ.append(float(o))
    return cell, np.asarray(lat.matrix, np.float64), np.asarray(frac, np.float64).reshape(-1, 3), \
        np.asarray(z, np.int64), np.asarray(occ, np.float64)


def reflection_families(structure, wavelength: float = 1.5406, two_theta_max: float = 90.0,
                        g_margin: float = G_MARGIN, symprec: float = SYMPREC,
                        min_rel: float = 0.0) -> dict[str, np.ndarray]:
    """Reflection families of a pymatgen structure (see :func:`families_of_arrays`)."""
    cell, _, frac, z, occ = structure_arrays(structure)
    return families_of_arrays(cell, frac, z, occ, wavelength, two_theta_max, g_margin, symprec, min_rel)


def families_of_arrays(cell: np.ndarray, frac: np.ndarray, z_site: np.ndarray, occ: np.ndarray | None = None,
                       wavelength: float = 1.5406, two_theta_max: float = 90.0,
                       g_margin: float = G_MARGIN, symprec: float = SYMPREC,
                       min_rel: float = 0.0, rotations: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Reflection families of a crystal given as arrays (see the module docstring).

    Args:
        cell: (6,) a, b, c [Å], α, β, γ [deg]; frac: (n, 3); z_site: (n,) atomic numbers;
            occ: (n,) occupancies (None: 1).
        wavelength: Å; with ``two_theta_max`` it sets the limiting radius 2 sin θ_max / λ.
        g_margin: enumerate up to ``g_margin`` × that radius (room for shrinking cells).
        symprec: spglib tolerance of the symmetry used to group reflections.
        min_rel: drop families whose intensity in this cell is below this fraction of the
            strongest reflection inside the 2θ range (0: keep all). Strain changes relative
            intensities only through Lorentz–polarisation and form factors, i.e. by tens of per
            cent, so families far below the stored sticks' threshold never matter.
        rotations: the structure's symmetry rotations in this cell's basis, when already known
            (e.g. from the generator's spglib check); None: ask spglib.

    Returns:
        ``cell`` (6,) float64, ``hkl`` (F, 3) int16 representatives, ``mult`` (F,) int16,
        ``sf`` (F, E, 2) float64 Re/Im of S_e, ``z`` (E,) int16 elements, sorted by 1/d.
    """
    cell, frac, z_site, occ = _as_arrays(cell, frac, z_site, occ)
    hkl, _ = _hkl_in_sphere(cell, _g_max(two_theta_max, wavelength) * g_margin)
    rep, mult, _ = _orbits(hkl, _rotations(cell, frac, z_site, rotations, symprec))
    return _families(cell, rep, mult, frac, z_site, occ, wavelength, two_theta_max, min_rel)


def _families(cell: np.ndarray, rep: np.ndarray, mult: np.ndarray, frac: np.ndarray, z_site: np.ndarray,
              occ: np.ndarray, wavelength: float, two_theta_max: float, min_rel: float
              ) -> dict[str, np.ndarray]:
    """Structure-factor sums, ``min_rel`` cut and 1/d order of families (canonical ``rep``, ``mult``)."""
    elements = np.unique(z_site)
    phase = np.exp(2j * np.pi * (rep.astype(np.float64) @ frac.T))  # (F, n_sites)
    onehot = (z_site[:, None] == elements[None, :]) * occ[:, None]  # (n_sites, E)
    s_e = phase @ onehot  # (F, E) complex
    q2 = inv_d2(rep, cell)
    sf = np.stack([s_e.real, s_e.imag], -1)
    keep = np.ones(len(rep), bool)
    if min_rel > 0 and len(rep):
        tt, inten = family_intensities(sf, mult.astype(np.float64), elements,
                                       form_factor_table()[elements], q2, wavelength)
        inside = tt <= two_theta_max
        top = inten[inside].max(initial=0.0)
        keep = inten >= min_rel * top
    order = np.flatnonzero(keep)[np.argsort(q2[keep], kind="stable")]
    return {"cell": cell, "hkl": rep[order].astype(np.int16), "mult": mult[order].astype(np.int16),
            "sf": sf[order], "z": elements.astype(np.int16)}


def structure_peaks(structure, wavelength: float = 1.5406, two_theta_range=(5.0, 90.0),
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Kinematic sticks of a pymatgen ``Structure`` (2θ [deg], intensity max 100), float32.

    Reflections at the same 2θ (within 10⁻⁵°, pymatgen's tolerance) are merged, so the result is
    pymatgen's ``XRDCalculator.get_pattern(structure, scaled=True)``; used by the simulator, the
    raw CIF reader and the external set, so all three produce identical sticks.
    """
    cell, _, frac, z, occ = structure_arrays(structure)
    return peaks_of_arrays(cell, frac, z, occ, wavelength, two_theta_range)


def peaks_of_arrays(cell: np.ndarray, frac: np.ndarray, z_site: np.ndarray, occ: np.ndarray | None = None,
                    wavelength: float = 1.5406, two_theta_range=(5.0, 90.0),
                    rotations: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`structure_peaks` of a crystal given as arrays (see :func:`families_of_arrays`)."""
    fam = families_of_arrays(cell, frac, z_site, occ, wavelength, two_theta_range[1], g_margin=1.0,
                             rotations=rotations)
    return _sticks(fam, wavelength, two_theta_range)


def _sticks(fam: dict[str, np.ndarray], wavelength: float, two_theta_range) -> tuple[np.ndarray, np.ndarray]:
    """Merged sticks (float32) of the families of the unstrained cell (all of them, min_rel 0)."""
    tt, it = family_sticks(fam["hkl"], fam["mult"], fam["sf"], fam["z"],
                           form_factor_table()[fam["z"].astype(np.int64)], fam["cell"], wavelength,
                           two_theta_range)
    tt, it = merge_coincident(tt.astype(np.float64), it.astype(np.float64))
    keep = it > 1e-3  # drop numerically-zero reflections (systematic absences rounding)
    return tt[keep].astype(np.float32), it[keep].astype(np.float32)


def sticks_and_families(cell: np.ndarray, frac: np.ndarray, z_site: np.ndarray, occ: np.ndarray | None = None,
                        wavelength: float = 1.5406, two_theta_range=(5.0, 90.0),
                        family_two_theta_max: float | None = None, g_margin: float = G_MARGIN,
                        min_rel: float = 0.0, rotations: np.ndarray | None = None,
                        family_frac: np.ndarray | None = None, symprec: float = SYMPREC,
                        ) -> tuple[tuple[np.ndarray, np.ndarray], dict[str, np.ndarray]]:
    """:func:`peaks_of_arrays` and :func:`families_of_arrays` of one crystal from one enumeration.

    The reflections up to the larger of the two radii are enumerated and grouped into orbits once
    (one spglib call at most, none with ``rotations``); each result takes the rows a separate
    call would have enumerated (:func:`_inner`: same box, same test on the same 1/d² values), so
    both equal the separate calls: the sticks those of ``peaks_of_arrays(cell, frac, ...)``, the
    families those of ``families_of_arrays(cell, family_frac, ..., family_two_theta_max, g_margin,
    min_rel=min_rel)``.

    Args:
        family_two_theta_max: the families' 2θ limit (None: ``two_theta_range[1]``).
        family_frac: coordinates the families' structure-factor sums use (None: ``frac``), e.g. the
            float32 coordinates a result stores, so that families match the stored structure.
        others: as :func:`families_of_arrays` (``rotations`` serve both results).

    Returns:
        ((2θ, intensity) float32 sticks, families dict).
    """
    cell, frac, z_site, occ = _as_arrays(cell, frac, z_site, occ)
    fam_frac = frac if family_frac is None else np.asarray(family_frac, np.float64).reshape(-1, 3)
    tt_fam = float(two_theta_range[1] if family_two_theta_max is None else family_two_theta_max)
    g_st, g_fam = _g_max(two_theta_range[1], wavelength), _g_max(tt_fam, wavelength) * g_margin
    hkl, q2 = _hkl_in_sphere(cell, max(g_st, g_fam))
    rep, mult, inverse = _orbits(hkl, _rotations(cell, frac, z_site, rotations, symprec))
    out = []
    for g in (g_st, g_fam):
        if g >= max(g_st, g_fam):
            out.append((rep, mult))
        else:  # members inside the smaller sphere (orbits straddling its surface keep those inside)
            n_in = np.bincount(inverse[_inner(hkl, q2, cell, g)], minlength=len(rep))
            sel = n_in > 0
            out.append((rep[sel], n_in[sel]))
    sticks = _sticks(_families(cell, *out[0], frac, z_site, occ, wavelength, two_theta_range[1], 0.0),
                     wavelength, two_theta_range)
    return sticks, _families(cell, *out[1], fam_frac, z_site, occ, wavelength, tt_fam, min_rel)


def merge_coincident(tt: np.ndarray, it: np.ndarray, tol: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    """Sum sticks of sorted 2θ closer than ``tol`` (chained), rescale to max 100."""
    if len(tt) == 0:
        return tt, it
    start = np.concatenate([[True], np.diff(tt) > tol])
    grp = np.cumsum(start) - 1
    out = np.bincount(grp, weights=it)
    pos = tt[start]
    return pos, out * (100.0 / out.max())


def pymatgen_peaks(structure, wavelength: float = 1.5406, two_theta_range=(5.0, 90.0),
                   ) -> tuple[np.ndarray, np.ndarray]:
    """pymatgen's ``XRDCalculator`` sticks (the independent reference of the tests)."""
    from pymatgen.analysis.diffraction.xrd import XRDCalculator

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = XRDCalculator(wavelength=float(wavelength)).get_pattern(
            structure, scaled=True, two_theta_range=tuple(two_theta_range))
    return np.asarray(p.x, np.float64), np.asarray(p.y, np.float64)
