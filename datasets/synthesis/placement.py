"""Fast random placement of atoms on given Wyckoff sites (vectorised numpy, no per-atom loops).

pyxtal's ``from_random`` places one Wyckoff site at a time with per-site Python loops (projection,
merging, an incremental distance check per placed site); profiling the simulator showed ~87 % of a
job inside it. Here a whole site is one array computation:

1. cell volume = ``volume_factor`` × Σ n_e · U(4/3 π r_cov³, 4/3 π r_vdW³) per element (at least
   0.75 Å³ per atom), the same estimate as pyxtal's ``set_volume``;
2. lattice parameters for the crystal system with that volume, drawn from the same distributions
   as pyxtal's ``generate_cellpara`` (log-normal axis ratios of width 0.35, monoclinic β normal on
   (30°, 150°), triclinic angles from a symmetric shear matrix; cells with an axis under 1.2 Å or
   an axis ratio over 10 are redrawn);
3. per site, ``POINT_DRAWS`` candidate points are drawn at once: free parameters u ~ U[0, 1)³
   mapped onto the site by its first operation (e.g. x, 1/4, 1/4), then every candidate's orbit
   under all the position's operations, (K, m, 3) mod 1. A candidate is accepted when its orbit
   keeps every pair tolerance, to its own atoms (so an orbit that collapsed onto a more special
   position, i.e. fewer than m distinct atoms, is refused) and to the atoms placed so far,
   minimum images over the 27 neighbouring cells. Sites without free parameters go first, then
   the larger orbits (hardest to fit), so the order never depends on the random draws;
4. the caller checks the finished crystal with spglib (exactly the target space group).

Crystallographic data (Wyckoff operations, lattice type, covalent/van der Waals radii, the
``Tol_matrix`` pair tolerances) come from pyxtal, so tolerances equal the pyxtal placer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache, lru_cache

import numpy as np

from datasets.rendering.physics import lattice_matrix

POINT_DRAWS = 8          # candidate points per site, checked in one batch
COORD_TRIES = 4          # placements of all sites per lattice
LATTICE_TRIES = 12       # lattices (each with a new volume draw) per composition
MIN_AXIS = 1.2           # Å, shortest allowed cell axis (pyxtal's minvec)
MAX_RATIO = 10.0         # largest axis ratio (pyxtal's max_ratio)
MIN_ATOM_VOLUME = 0.75   # Å³ per atom (pyxtal's min_density)
_OFFSETS = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], np.float64)
_OFFSETS2T = 2.0 * _OFFSETS.T


@dataclass(frozen=True)
class SiteOps:
    """Operations of one Wyckoff position: x_k = rot[k] · p + trans[k] for k < multiplicity."""

    label: str
    rot: np.ndarray      # (m, 3, 3)
    trans: np.ndarray    # (m, 3)
    rot0: np.ndarray     # (3, 3) first operation: free parameters -> a point of the site
    trans0: np.ndarray   # (3,)
    dof: int
    rot_t: np.ndarray    # (3, 3m) all rotations side by side: p @ rot_t = (rot[k] · p)_k, one GEMM


@cache
def pyxtal_group(sg: int):
    """``pyxtal.symmetry.Group(sg)`` (cached per process: building one takes up to ~0.1 s)."""
    from pyxtal.symmetry import Group

    return Group(int(sg))


@lru_cache(maxsize=4)
def tol_matrix(factor: float):
    """pyxtal's ``Tol_matrix(prototype="atomic", factor)``: factor × (r_cov,A + r_cov,B) / 2."""
    from pyxtal.tolerance import Tol_matrix

    return Tol_matrix(prototype="atomic", factor=factor)


@cache
def site_ops(sg: int, index: int) -> SiteOps:
    """Operations of ``pyxtal.symmetry.Group(sg)[index]`` (cached per process)."""
    wp = pyxtal_group(sg)[int(index)]
    aff = np.array([op.affine_matrix for op in wp.ops], np.float64)
    rot = aff[:, :3, :3]
    return SiteOps(wp.get_label(), rot, aff[:, :3, 3], aff[0, :3, :3], aff[0, :3, 3], int(wp.get_dof()),
                   np.ascontiguousarray(rot.transpose(2, 0, 1).reshape(3, -1)))


@cache
def lattice_type(sg: int) -> str:
    """pyxtal's lattice type of the group (triclinic … cubic; trigonal cells are hexagonal)."""
    return str(pyxtal_group(sg).lattice_type)


@cache
def atom_volumes(symbol: str) -> tuple[float, float]:
    """(covalent, van der Waals) sphere volumes of an element [Å³] from pyxtal's element table."""
    from pyxtal.database.element import Element

    e = Element(symbol)
    return 4 / 3 * np.pi * e.covalent_radius ** 3, 4 / 3 * np.pi * e.vdw_radius ** 3


@cache
def _pair_tol(a: str, b: str, factor: float) -> float:
    return float(tol_matrix(factor).get_tol(a, b))


def pair_tolerances(symbols: tuple[str, ...], factor: float) -> np.ndarray:
    """(E, E) minimum distances [Å]: pyxtal's ``Tol_matrix(prototype="atomic", factor)``."""
    return np.array([[_pair_tol(a, b, factor) for b in symbols] for a in symbols], np.float64)


def draw_volume(rng: np.random.Generator, symbols: list[str], counts: list[int], factor: float) -> float:
    """Target cell volume [Å³] (module docstring, step 1)."""
    lo, hi = np.array([atom_volumes(s) for s in symbols]).T
    vol = factor * float(np.sum(np.asarray(counts) * rng.uniform(lo, hi)))
    return max(vol, MIN_ATOM_VOLUME * sum(counts))


def _truncnormal(rng: np.random.Generator, lo: float, hi: float, sigma: float = 3.0) -> float:
    """Normal centred on (lo, hi) with half-width = ``sigma`` standard deviations, redrawn outside."""
    while True:
        x = rng.normal((lo + hi) / 2, (hi - lo) / 2 / sigma)
        if lo < x < hi:
            return float(x)


def draw_cell(rng: np.random.Generator, ltype: str, volume: float, tries: int = 100) -> np.ndarray | None:
    """(a, b, c, α, β, γ) [Å, deg] of the lattice type with the given volume (docstring, step 2)."""
    lo, hi = np.pi / 6, 5 * np.pi / 6
    for _ in range(tries):
        al = be = ga = np.pi / 2
        vec = np.exp(rng.normal(scale=0.35, size=3))
        if ltype == "triclinic":
            s = rng.normal(scale=0.2, size=3)
            m = np.array([[1, s[0], s[1]], [s[0], 1, s[2]], [s[1], s[2], 1]])
            n = np.linalg.norm(m, axis=1)
            al, be, ga = (np.arccos(np.clip(m[i] @ m[j] / (n[i] * n[j]), -1, 1))
                          for i, j in ((1, 2), (0, 2), (0, 1)))
        elif ltype == "monoclinic":
            be = _truncnormal(rng, lo, hi)
        elif ltype in ("hexagonal", "trigonal"):
            ga = 2 * np.pi / 3
        ca, cb, cg = np.cos(al), np.cos(be), np.cos(ga)
        x2 = 1 - ca * ca - cb * cb - cg * cg + 2 * ca * cb * cg
        if x2 <= 1e-6:
            continue
        unit = volume / np.sqrt(x2)       # a·b·c
        if ltype in ("tetragonal", "hexagonal", "trigonal"):
            c = vec[2] / (vec[0] * vec[1]) * np.cbrt(unit)
            abc = np.array([np.sqrt(unit / c), np.sqrt(unit / c), c])
        elif ltype == "cubic":
            abc = np.full(3, np.cbrt(volume))
        else:
            abc = vec * np.cbrt(unit / np.prod(vec))
        ang = np.array([al, be, ga])
        if abc.min() < MIN_AXIS or abc.max() / abc.min() > MAX_RATIO or ang.min() <= lo or ang.max() >= hi:
            continue
        return np.concatenate([abc, np.degrees(ang)])
    return None


def _metric(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(G, oᵀGo for the 27 neighbour offsets o) of a cell: what :func:`_min_dist2` needs."""
    gram = matrix @ matrix.T
    return gram, np.einsum("oi,ij,oj->o", _OFFSETS, gram, _OFFSETS)


def _min_dist2(diff: np.ndarray, metric: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Squared minimum-image distances of fractional differences (..., 3).

    |(d + o)·A|² = dᵀGd + 2 dᵀGo + oᵀGo, minimised over the 27 offsets o after wrapping d to
    [-½, ½] (the same image set as pyxtal's checks).
    """
    gram, ogo = metric
    diff = diff - np.round(diff)
    dg = diff @ gram
    return np.sum(dg * diff, axis=-1) + (dg @ _OFFSETS2T + ogo).min(axis=-1)


def _place_site(rng: np.random.Generator, ops: SiteOps, elem: int, metric, frac: np.ndarray,
                kinds: np.ndarray, tol2: np.ndarray) -> np.ndarray | None:
    """Orbit (m, 3) of the first of ``POINT_DRAWS`` candidates that keeps all distances, or None."""
    k = POINT_DRAWS if ops.dof else 1
    pts = rng.random((k, 3)) @ ops.rot0.T + ops.trans0                       # (K, 3)
    orb = (pts @ ops.rot_t).reshape(len(pts), -1, 3) + ops.trans             # (K, m, 3)
    orb -= np.floor(orb)
    m = orb.shape[1]
    own = _min_dist2(orb[:, :, None, :] - orb[:, None, :, :], metric)          # (K, m, m)
    # an atom's own images are lattice vectors away: only pairs i != j are checked here
    own[:, np.arange(m), np.arange(m)] = np.inf
    ok = own.reshape(len(orb), -1).min(axis=1) >= tol2[elem, elem]
    if len(frac) and ok.any():
        d2 = _min_dist2(orb[:, :, None, :] - frac[None, None, :, :], metric)  # (K, m, n)
        ok &= np.all(d2 >= tol2[elem, kinds][None, None, :], axis=(1, 2))
    hit = np.flatnonzero(ok)
    return orb[hit[0]] if len(hit) else None


@dataclass
class Placed:
    """A placed crystal: cell (6,) [Å, deg], lattice matrix (3, 3), frac (n, 3), species index (n,)."""

    cell: np.ndarray
    matrix: np.ndarray
    frac: np.ndarray
    kinds: np.ndarray


class PlacementError(RuntimeError):
    """No placement kept the distances (or passed ``accept``) within the allowed tries."""


def place_atoms(rng: np.random.Generator, sg: int, site_index: list[int], site_elem: list[int],
                symbols: list[str], tol_factor: float = 1.0, volume_factor: float = 1.1,
                accept=None, max_rejects: int = 3) -> Placed:
    """Random crystal with element ``symbols[site_elem[i]]`` on Wyckoff position ``site_index[i]``.

    Args:
        rng: the job's generator (the only source of randomness: deterministic per seed).
        sg: space group 1..230 (pyxtal's standard setting).
        site_index: per site, the index into ``Group(sg)`` (0 = general position).
        site_elem: per site, the index into ``symbols``.
        symbols: element symbols.
        tol_factor: scale of the covalent-radius pair tolerances (``Tol_matrix`` factor).
        volume_factor: cell volume over the drawn atomic volumes.
        accept: optional ``Placed -> str | None`` (e.g. the spglib check): None accepts, a string
            says why not; a refused placement counts as a failed coordinate attempt.
        max_rejects: refusals by ``accept`` before giving up (a composition that raises the
            symmetry usually does so in every lattice).

    Returns:
        :class:`Placed`, atoms grouped by site in placement order.

    Raises:
        PlacementError: after ``LATTICE_TRIES`` × ``COORD_TRIES`` failures or ``max_rejects``
            refusals.
    """
    ops = [site_ops(sg, i) for i in site_index]
    counts = [0] * len(symbols)
    for o, e in zip(ops, site_elem):
        counts[e] += len(o.rot)
    tol2 = pair_tolerances(tuple(symbols), float(tol_factor)) ** 2
    # fixed sites first, then large orbits; stable, so equal sites keep the row's order
    order = sorted(range(len(ops)), key=lambda i: (ops[i].dof > 0, -len(ops[i].rot)))
    ltype = lattice_type(sg)
    rejects, why = 0, "no lattice"
    for _ in range(LATTICE_TRIES):
        cell = draw_cell(rng, ltype, draw_volume(rng, symbols, counts, volume_factor))
        if cell is None:
            continue
        mat = lattice_matrix(cell)
        metric = _metric(mat)
        for _ in range(COORD_TRIES):
            frac, kinds, fixed_failed = np.zeros((0, 3)), np.zeros(0, np.int64), False
            for i in order:
                orb = _place_site(rng, ops[i], site_elem[i], metric, frac, kinds, tol2)
                if orb is None:
                    fixed_failed, why = ops[i].dof == 0, f"no room for {ops[i].label}"
                    break
                frac = np.concatenate([frac, orb])
                kinds = np.concatenate([kinds, np.full(len(orb), site_elem[i])])
            else:
                placed = Placed(cell, mat, frac, kinds)
                why = None if accept is None else accept(placed)
                if why is None:
                    return placed
                rejects += 1
                if rejects >= max_rejects:
                    raise PlacementError(why)
            if fixed_failed:  # fixed sites are placed first and never move: a new lattice is needed
                break
    raise PlacementError(f"placement failed ({why})")
