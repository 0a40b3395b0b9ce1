"""One random crystal for one row of the Materials Project (space group, Wyckoff combination) table.

The built-in benchmark (DATA.md) follows real crystals: pyxtal's ``database/spg_num_wps_mp.csv``
counts 88,678 Materials Project structures by (space group, atoms in the conventional cell,
Wyckoff combination). For a sampled row we fill every Wyckoff site of the combination with one
element, draw a lattice and place the atoms so that the interatomic distance tolerances hold:
by default with the vectorised placer of :mod:`datasets.synthesis.placement` (about ten times
faster), or with pyxtal (Fredericks et al., "PyXtal: a Python library for crystal structure
generation and symmetry analysis", Comput. Phys. Commun. 261, 107810 (2021)), whose Wyckoff
tables, radii and tolerance matrices both use.

Compositions are drawn so that compounds look like real inorganic materials: the Materials
Project is dominated by oxides, then intermetallics, chalcogenides, halides and pnictides. For an
ionic family the highest-multiplicity sites take the anion (about 50–75 % of the atoms, as in
oxides), the remaining sites take one to three cations drawn from element lists weighted roughly
by how often the element occurs in inorganic databases. Intermetallics use metals on every site.

Every result is checked with spglib: it must have exactly the target space group (same elements
on special positions can raise the symmetry, which would mislabel the pattern).

Failure handling (every step is recorded): three compositions with pyxtal's default tolerances,
then two with a relaxed tolerance matrix (with the fast placer these five run first with it, then
again with pyxtal), then one with pyxtal without the Wyckoff-letter constraint (same space group
and atom counts per element). Everything is driven by one ``numpy`` Generator, so a
(seed, split, index) job always yields the same structure.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from functools import cache

import numpy as np

from datasets.synthesis.placement import place_atoms, pyxtal_group, site_ops, tol_matrix

MP_TABLE_NAME = "spg_num_wps_mp.csv"
# Bump when a change here alters generated structures: old resumable shards are then refused.
GENERATOR_VERSION = 5  # 5: fast vectorised placer (placement.py) by default, pyxtal as fallback
# Symmetry check of the result (Å): a structure whose symmetry is higher than the target group
# (e.g. one element on both 4a and 4b of Fm-3m is simple cubic) would carry a wrong label.
SYMPREC = 0.01

# (family, weight): rough share of compound families among Materials Project entries.
FAMILIES = (("oxide", 0.40), ("intermetallic", 0.20), ("chalcogenide", 0.13), ("halide", 0.12),
            ("pnictide", 0.10), ("boride_carbide", 0.05))
ANIONS = {
    "oxide": {"O": 1.0},
    "chalcogenide": {"S": 0.5, "Se": 0.35, "Te": 0.15},
    "halide": {"F": 0.35, "Cl": 0.35, "Br": 0.18, "I": 0.12},
    "pnictide": {"N": 0.35, "P": 0.3, "As": 0.2, "Sb": 0.15},
    "boride_carbide": {"B": 0.5, "C": 0.5},
}
# Cations of ionic compounds, weighted roughly by frequency in inorganic crystal databases.
CATIONS = {
    "Li": 6, "Na": 5, "K": 4, "Rb": 2, "Cs": 2, "Mg": 4, "Ca": 4, "Sr": 3, "Ba": 4,
    "Sc": 1, "Y": 2, "La": 3, "Ce": 1, "Pr": 1, "Nd": 1, "Sm": 1, "Gd": 1, "Er": 1,
    "Ti": 3, "Zr": 2, "Hf": 1, "V": 3, "Nb": 2, "Ta": 1, "Cr": 2, "Mo": 2, "W": 2,
    "Mn": 5, "Fe": 4, "Co": 4, "Ni": 3, "Cu": 4, "Ag": 2, "Zn": 3, "Cd": 1,
    "Al": 3, "Ga": 2, "In": 2, "Si": 3, "Ge": 2, "Sn": 2, "Pb": 1, "Bi": 2, "B": 1, "P": 2,
}
# Metals of intermetallic compounds.
METALS = {
    "Li": 2, "Mg": 3, "Ca": 1, "Al": 4, "Ga": 3, "In": 2, "Sn": 3, "Si": 3, "Ge": 3, "Sb": 2,
    "Ti": 3, "Zr": 3, "Hf": 1, "V": 2, "Nb": 2, "Cr": 2, "Mo": 2, "W": 1, "Mn": 3, "Fe": 4,
    "Co": 4, "Ni": 4, "Cu": 3, "Zn": 2, "Ru": 2, "Rh": 2, "Pd": 3, "Ag": 2, "Pt": 3, "Au": 2,
    "Y": 2, "La": 3, "Ce": 2, "Nd": 2, "Sm": 2, "Gd": 2, "Er": 2, "U": 1,
}
# Common oxidation states, used to keep ionic compositions charge balanced.
OX_STATES = {
    "Li": (1,), "Na": (1,), "K": (1,), "Rb": (1,), "Cs": (1,), "Ag": (1,), "Cu": (1, 2),
    "Mg": (2,), "Ca": (2,), "Sr": (2,), "Ba": (2,), "Zn": (2,), "Cd": (2,), "Pb": (2, 4),
    "Sc": (3,), "Y": (3,), "La": (3,), "Ce": (3, 4), "Pr": (3,), "Nd": (3,), "Sm": (3,), "Gd": (3,),
    "Er": (3,), "Ti": (2, 3, 4), "Zr": (4,), "Hf": (4,), "V": (2, 3, 4, 5), "Nb": (3, 5), "Ta": (5,),
    "Cr": (2, 3, 6), "Mo": (3, 4, 6), "W": (4, 6), "Mn": (2, 3, 4), "Fe": (2, 3), "Co": (2, 3),
    "Ni": (2, 3), "Al": (3,), "Ga": (3,), "In": (1, 3), "Si": (4,), "Ge": (2, 4), "Sn": (2, 4),
    "Bi": (3, 5), "B": (3,), "P": (3, 5),
}
ANION_CHARGE = {"O": 2, "S": 2, "Se": 2, "Te": 2, "F": 1, "Cl": 1, "Br": 1, "I": 1,
                "N": 3, "P": 3, "As": 3, "Sb": 3}
BALANCE_DRAWS = 25                   # compositions tried before accepting an unbalanced one
N_CATIONS_P = (0.45, 0.40, 0.15)     # one, two or three distinct cations
N_METALS_P = (0.15, 0.55, 0.30)      # elements of an intermetallic
_TABLES = [CATIONS, METALS, *ANIONS.values()]  # element tables _pick draws from (cached by position)
RELAXED_TOL_FACTOR = 0.75            # scales pyxtal's covalent-radius tolerances on retries


def mp_table_path() -> str:
    """Path of pyxtal's Materials Project (space group, n_atoms, Wyckoff) table."""
    import importlib.util

    spec = importlib.util.find_spec("pyxtal")
    if spec is None or spec.origin is None:
        raise ImportError("pyxtal is not installed: `pip install pyxtal` (it ships the MP table)")
    return os.path.join(os.path.dirname(spec.origin), "database", MP_TABLE_NAME)


_group = pyxtal_group
_tol_matrix = tol_matrix


def wyckoff_sites(sg: int, wps: str) -> list[tuple[str, int]]:
    """Wyckoff labels of a table row: ``wps`` is '-'-joined indices into ``Group(sg)``'s list.

    Returns:
        [(label e.g. '4a', multiplicity), ...] in the row's order.
    """
    return [(o.label, len(o.rot)) for o in (site_ops(sg, int(t)) for t in str(wps).split("-"))]


def fixed_sites(sg: int, wps: str) -> list[bool]:
    """Per site of the row: True when the Wyckoff position has no free coordinate (e.g. 4a)."""
    return [site_ops(sg, int(t)).dof == 0 for t in str(wps).split("-")]


@cache
def _choices(table_id: int, exclude: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(names, probabilities) of one of the module's element tables without ``exclude``."""
    table = _TABLES[table_id]
    names = [n for n in table if n not in exclude]
    p = np.array([table[n] for n in names], dtype=np.float64)
    return np.array(names), p / p.sum()


def _pick(rng: np.random.Generator, table: dict[str, float], k: int, exclude=()) -> list[str]:
    names, p = _choices(_TABLES.index(table), tuple(exclude))
    return [str(x) for x in rng.choice(names, size=k, replace=False, p=p)]


def _draw_once(rng: np.random.Generator, sites: list[tuple[str, int]], fam: str, fixed: list[bool]
               ) -> tuple[list[str], list[int], list[list[str]], bool]:
    """Assign one element to every Wyckoff site (one random draw; see :func:`draw_composition`).

    Args:
        rng: the job's generator.
        sites: [(label, multiplicity)] of the row.
        fam: compound family (a key of ``FAMILIES``).
        fixed: per site, whether it has no free coordinate. One element on two fixed sites often
            makes a higher-symmetry structure (4a + 4b of Fm-3m is simple cubic), so fixed sites
            get distinct elements where the composition allows.

    Returns:
        (species, numIons, sites per species, charge balanced).
    """
    n_sites = len(sites)
    # Large sites first (anions are the majority in ionic solids), with random tie breaking.
    jitter = rng.uniform(0.6, 1.4, n_sites)
    order = sorted(range(n_sites), key=lambda i: (-sites[i][1] * jitter[i], i))
    anion = None
    site_el: list[str | None] = [None] * n_sites
    if fam == "intermetallic" or n_sites == 1:
        metal_sites = list(range(n_sites))
        k = min(n_sites, max(1 + int(rng.choice(3, p=N_METALS_P)), min(4, sum(fixed))))
        els = _pick(rng, METALS, k)
    else:
        anion = _pick(rng, ANIONS[fam], 1)[0]
        n_atoms = sum(m for _, m in sites)
        target = rng.uniform(0.5, 0.75) * n_atoms
        # The largest site always takes the anion; further large sites while under the target.
        got, anion_sites = 0, []
        for i in order:
            if len(anion_sites) == n_sites - 1:
                break
            if fixed[i] and any(fixed[j] for j in anion_sites):
                continue
            if not anion_sites or got + sites[i][1] <= target:
                anion_sites.append(i)
                got += sites[i][1]
        for i in anion_sites:
            site_el[i] = anion
        metal_sites = [i for i in range(n_sites) if site_el[i] is None]
        n_fixed = sum(fixed[i] for i in metal_sites)
        k = min(len(metal_sites), max(1 + int(rng.choice(3, p=N_CATIONS_P)), min(4, n_fixed)))
        els = _pick(rng, CATIONS, k, exclude=(anion,))
    # Every chosen element gets at least one site (fixed sites first, so they differ); the rest
    # are spread at random.
    perm = [int(i) for i in rng.permutation(metal_sites)]
    perm = [i for i in perm if fixed[i]] + [i for i in perm if not fixed[i]]
    for j, i in enumerate(perm):
        site_el[i] = els[j] if j < len(els) else els[int(rng.integers(len(els)))]
    species: list[str] = []
    for e in site_el:
        if e not in species:
            species.append(e)
    num = [sum(sites[i][1] for i in range(n_sites) if site_el[i] == e) for e in species]
    per = [[sites[i][0] for i in range(n_sites) if site_el[i] == e] for e in species]
    return species, num, per, anion is None or _balanced(species, num, anion)


def _balanced(species: list[str], num: list[int], anion: str) -> bool:
    """Whether some choice of one common oxidation state per cation neutralises the anions."""
    if anion not in ANION_CHARGE:  # borides/carbides are metal-rich, not ionic
        return True
    need = ANION_CHARGE[anion] * num[species.index(anion)]
    reach = {0}
    for e, n in zip(species, num):
        if e != anion:
            reach = {r + n * q for r in reach for q in OX_STATES.get(e, (2,)) if r + n * q <= need}
    return need in reach


def draw_composition(rng: np.random.Generator, sites: list[tuple[str, int]],
                     fixed: list[bool] | None = None) -> tuple[list[str], list[int], list[list[str]]]:
    """Assign one element to every Wyckoff site, preferring charge-balanced ionic compounds.

    Up to ``BALANCE_DRAWS`` random draws; the first charge-balanced one (or the last draw) wins,
    so compounds look like real inorganic materials, e.g. ``Ca2MnO4`` rather than ``Ca3O7``.

    Args:
        rng: the job's generator.
        sites: [(label, multiplicity)] of the row.
        fixed: per site, no free coordinate (:func:`fixed_sites`); None = all free.

    Returns:
        (species, numIons, sites per species) in pyxtal's ``from_random`` format.
    """
    fixed = list(fixed) if fixed is not None else [False] * len(sites)
    # The family is drawn once, so that redrawing for balance does not favour intermetallics.
    fams, w = zip(*FAMILIES)
    fam = str(rng.choice(fams, p=np.asarray(w) / sum(w)))
    for _ in range(BALANCE_DRAWS):
        species, num, per, ok = _draw_once(rng, sites, fam, fixed)
        if ok:
            break
    return species, num, per


def _space_group_number(structure) -> int:
    """spglib's space group of a pymatgen structure at ``SYMPREC``."""
    cell = (structure.lattice.matrix, structure.frac_coords, [sp.Z for sp in structure.species])
    ds = _spglib_dataset(cell)
    return int(ds.number) if ds is not None else 0


def _spglib_dataset(cell):
    """spglib's symmetry dataset of (lattice rows, frac, atomic numbers) at ``SYMPREC`` (or None)."""
    import spglib

    return spglib.get_symmetry_dataset(cell, symprec=SYMPREC)


@cache
def _atomic_number(symbol: str) -> int:
    from pymatgen.core.periodic_table import Element

    return int(Element(symbol).Z)


@dataclass
class GenResult:
    """Outcome of one job: the crystal (None on failure) and the attempt log.

    The fast placer returns arrays (``frac``, ``numbers``, cell = ``lattice``); the pymatgen
    ``structure`` is then built on first access. The pyxtal placer returns the structure and the
    arrays stay None.
    """

    pmg: object | None = None
    formula: str = ""
    lattice: tuple[float, ...] = (0.0,) * 6
    attempts: int = 0
    relaxed: int = 0                       # 0 strict, 1 relaxed tolerance, 2 no Wyckoff letters
    errors: list[str] = field(default_factory=list)
    frac: np.ndarray | None = None         # (n, 3) fractional coordinates (fast placer)
    numbers: np.ndarray | None = None      # (n,) atomic numbers (fast placer)
    rotations: np.ndarray | None = None    # (k, 3, 3) symmetry rotations found by the spglib check
    placer: str = ""                       # which placer produced the crystal

    @property
    def ok(self) -> bool:
        return self.pmg is not None or self.frac is not None

    @property
    def structure(self):
        """``pymatgen.core.Structure`` (conventional cell) or None on failure."""
        if self.pmg is None and self.frac is not None:
            from pymatgen.core import Lattice, Structure

            self.pmg = Structure(Lattice.from_parameters(*self.lattice), self.numbers.tolist(), self.frac)
        return self.pmg

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(cell (6,), frac (n, 3), atomic numbers (n,)) of a successful result."""
        if self.frac is not None:
            return np.asarray(self.lattice, np.float64), self.frac, self.numbers
        from datasets.synthesis.reflections import structure_arrays

        cell, _, frac, z, _ = structure_arrays(self.structure)
        return cell, frac, z


def _site_assignment(sg: int, wps: str, species: list[str], per: list[list[str]]
                     ) -> tuple[list[int], list[int]]:
    """Per site of the row: its index into ``Group(sg)`` and the index of its element in ``species``."""
    index = [int(t) for t in str(wps).split("-")]
    labels = [lab for lab, _ in wyckoff_sites(sg, wps)]
    elem = [-1] * len(index)
    for e, labs in enumerate(per):
        for lab in labs:
            i = next(i for i, x in enumerate(labels) if x == lab and elem[i] < 0)
            elem[i] = e
    return index, elem


def _fast_attempt(sg: int, wps: str, species: list[str], per: list[list[str]], rng: np.random.Generator,
                  tol: float, volume_factor: float) -> tuple[np.ndarray, ...]:
    """One composition with :func:`datasets.synthesis.placement.place_atoms` + the spglib check.

    Returns:
        (cell (6,), frac (n, 3), atomic numbers (n,), symmetry rotations (k, 3, 3) in that cell).
    """
    index, elem = _site_assignment(sg, wps, species, per)
    z_of = np.array([_atomic_number(e) for e in species], np.int64)

    rotations = []

    def check(p) -> str | None:
        ds = _spglib_dataset((p.matrix, p.frac, z_of[p.kinds]))
        found = int(ds.number) if ds is not None else 0
        if found != sg:
            return f"symmetry of the result is {found}, not {sg}"
        rotations.append(np.asarray(ds.rotations))
        return None

    p = place_atoms(rng, sg, index, elem, species, tol_factor=tol, volume_factor=volume_factor,
                    accept=check)
    return p.cell, p.frac, z_of[p.kinds], rotations[-1]


PLACERS = ("fast", "pyxtal")


def generate_structure(sg: int, wps: str, rng: np.random.Generator, strict_tries: int = 3,
                       relaxed_tries: int = 2, free_tries: int = 1, tol_factor: float = 1.0,
                       volume_factor: float = 1.1, placer: str = "fast") -> GenResult:
    """Random crystal for one (space group, Wyckoff combination) row.

    Args:
        sg: space group 1..230.
        wps: the row's '-'-joined Wyckoff indices (0 = general position).
        rng: numpy Generator of the job (drives composition and placement).
        strict_tries / relaxed_tries / free_tries: attempts per stage (see module docstring).
        tol_factor: scale of pyxtal's distance tolerances in the strict stage.
        volume_factor: pyxtal's ``factor`` (cell volume over the sum of atomic volumes).
        placer: ``"fast"`` (:mod:`datasets.synthesis.placement`; when its strict and relaxed
            stages all fail, the job continues with pyxtal's stages) or ``"pyxtal"`` (pyxtal's
            ``from_random`` only).

    Returns:
        GenResult; ``structure`` is a ``pymatgen.core.Structure`` (conventional cell) or None.
    """
    if placer not in PLACERS:
        raise ValueError(f"placer must be one of {PLACERS}, not {placer!r}")
    sites = wyckoff_sites(sg, wps)
    fixed = fixed_sites(sg, wps)
    relax = RELAXED_TOL_FACTOR * tol_factor
    plan = [(0, tol_factor)] * strict_tries + [(1, relax)] * relaxed_tries
    plan = [(p, st, t) for p in (["fast", "pyxtal"] if placer == "fast" else ["pyxtal"]) for st, t in plan]
    plan += [("pyxtal", 2, relax)] * free_tries
    res = GenResult()
    for how, stage, tol in plan:
        res.attempts += 1
        species, num, per = draw_composition(rng, sites, fixed)
        try:
            if how == "fast":
                cell, frac, z, rots = _fast_attempt(sg, wps, species, per, rng, tol, volume_factor)
                res.frac, res.numbers, res.rotations = frac, z, rots
                res.lattice = tuple(float(v) for v in cell)
                from pymatgen.core import Composition

                res.formula = Composition(dict(zip(species, num))).reduced_formula
            else:
                s = _pyxtal_attempt(sg, species, num, per if stage < 2 else None, rng, tol, volume_factor)
                lat = s.lattice
                res.pmg, res.formula = s, s.composition.reduced_formula
                res.lattice = (lat.a, lat.b, lat.c, lat.alpha, lat.beta, lat.gamma)
        except Exception as exc:  # pyxtal raises many types (RuntimeError, CompatibilityError...)
            res.errors.append(f"{how}: {type(exc).__name__}: {str(exc)[:80]}")
            continue
        res.relaxed, res.placer = stage, how
        return res
    return res


def _pyxtal_attempt(sg: int, species: list[str], num: list[int], per, rng: np.random.Generator, tol: float,
                    volume_factor: float):
    """One composition with pyxtal's ``from_random`` + the spglib check → pymatgen structure."""
    from pyxtal import pyxtal

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = pyxtal()
        c.from_random(3, _group(sg), species, num, factor=volume_factor, sites=per,
                      random_state=rng, tm=_tol_matrix(tol), max_count=3)
        if not c.valid:
            raise RuntimeError("pyxtal returned an invalid structure")
        s = c.to_pymatgen()
    found = _space_group_number(s)
    if found != sg:
        raise ValueError(f"symmetry of the result is {found}, not {sg}")
    return s
