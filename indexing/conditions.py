"""Systematic absences of the 230 space groups, derived from their symmetry operations, and the
99 extinction groups with the cell settings in which an indexed cell may show them.

**Rule** (docs/methods/indexing.md; International Tables A, §1.6.5): for an operation (R, t)
of the conventional cell (centring translations included) acting on fractional coordinates
x → Rx + t, a reflection h (row vector) with h·R = h picks up the phase exp(2πi h·t) in every
structure factor, so **h is absent iff some operation has h·R = h and h·t ∉ ℤ**. This one rule
gives the integral (centring), zonal (glide) and serial (screw) conditions alike. The operations
are parsed here from the ``x,y,z`` strings of :func:`utils.sg_tables.symmetry_operations` (ITA
standard setting: unique axis b cell choice 1, origin choice 2, hexagonal axes for R); the tests
check them against spglib's matrices of the same Hall numbers. Translations are kept as integer
twelfths (every ITA translation is a multiple of 1/12), so the test h·t ∈ ℤ is exact.

**Settings.** An indexed cell is a conventional cell of its metric, but not necessarily the ITA
standard setting of the true group. A :class:`Setting` is a unimodular matrix M with
h_std = h_cell · M (M = P⁻¹ for the ITA basis change (a', b', c') = (a, b, c) P). Per metric
system (:data:`SETTINGS`): orthorhombic, the 6 axis permutations; monoclinic (b unique), the 3
cell choices × a↔c exchange (the 6 elements of GL(2, ℤ/2) on the ac plane, which permute the
three half-lattice vectors a/2, c/2, (a+c)/2 that glides and centrings use: P2₁/c ≡ P2₁/n ≡
P2₁/a, C2/c ≡ A2/n ≡ I2/a); hexagonal, obverse and reverse (−h+k+l = 3n vs h−k+l = 3n) for R;
tetragonal, hexagonal, cubic, c unique. An *instance* is one (group, space group, setting) whose
absence set is distinct on a reference hkl box; the 99 extinction groups of
``data/sg_extinction_groups.csv`` are the classes of these sets up to setting (the tests check that
partition against the CSV; its only exceptions are the pairs of groups with identical absences
but different Laue classes, e.g. P3₁ / P6₂).

**Evaluation.** Per metric system the instances' conditions are stored once as a unique list of
(R', t') in the cell's frame (R' = M R M⁻¹, t' = M t) with an instance × condition incidence
matrix, so the absences of all instances on a pattern's hkl list cost one fixed-point mask per
distinct R', one (M, 3) @ (3, C) phase product and one matrix product.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np

from utils.lattice import hkl_box
from utils.sg_tables import N_SG, space_group_table, symmetry_operations

METRIC_SYSTEMS = ("triclinic", "monoclinic", "orthorhombic", "tetragonal", "hexagonal", "cubic")
# crystal systems (utils.sg_tables.CRYSTAL_SYSTEMS) whose groups a metric system can host: a
# hexagonal metric carries the trigonal (P and R, hexagonal axes) and the hexagonal groups
METRIC_FAMILY = {"triclinic": ("triclinic",), "monoclinic": ("monoclinic",),
                 "orthorhombic": ("orthorhombic",), "tetragonal": ("tetragonal",),
                 "hexagonal": ("trigonal", "hexagonal"), "cubic": ("cubic",)}
N_GROUPS = 99
_TERM = re.compile(r"([+-]?)([^+-]+)")


def parse_operation(op: str) -> tuple[np.ndarray, np.ndarray]:
    """Rotation and translation of an operation string such as ``-x+y,-x,z+1/3``.

    Returns:
        R: (3, 3) int64 with x' = R x + t; t12: (3,) int64, the translation in twelfths mod 12.
    """
    rows = op.replace(" ", "").lower().split(",")
    if len(rows) != 3:
        raise ValueError(f"operation {op!r} does not have three components")
    rot, t12 = np.zeros((3, 3), np.int64), np.zeros(3, np.int64)
    for i, row in enumerate(rows):
        for sign, body in _TERM.findall(row):
            s = -1 if sign == "-" else 1
            if body[-1] in "xyz":
                coef = body[:-1].rstrip("*")
                rot[i, "xyz".index(body[-1])] += s * (int(coef) if coef else 1)
            else:
                twelfths = Fraction(body) * 12 * s
                if twelfths.denominator != 1:
                    raise ValueError(f"translation {body} of {op!r} is not a multiple of 1/12")
                t12[i] += int(twelfths)
    return rot, t12 % 12


@lru_cache(maxsize=N_SG)
def operations(sg: int) -> tuple[np.ndarray, np.ndarray]:
    """All operations of the conventional cell (centring included) of ``sg`` (1..230), ITA setting.

    Returns:
        R: (n, 3, 3) int64; t12: (n, 3) int64 translations in twelfths.
    """
    parsed = [parse_operation(op) for op in symmetry_operations(sg, centred=True)]
    return np.stack([p[0] for p in parsed]), np.stack([p[1] for p in parsed])


def _absent_by_ops(hkl: np.ndarray, rot: np.ndarray, t12: np.ndarray) -> np.ndarray:
    """(M,) bool: the absence rule over operations (R (n,3,3), t12 (n,3)) in the hkl's frame."""
    h = np.asarray(hkl, np.int64).reshape(-1, 3)
    keep = np.any(t12 % 12 != 0, axis=1)  # a pure point operation never extinguishes anything
    rot, t12 = rot[keep], t12[keep]
    out = np.zeros(len(h), bool)
    for r in np.unique(rot, axis=0):  # one fixed-point mask per distinct R (centring repeats R)
        fixed = np.all(h @ r == h, axis=1)
        ts = t12[np.all(rot == r, axis=(1, 2))]
        out |= fixed & np.any((h @ ts.T) % 12 != 0, axis=1)
    return out


def absent(hkl: np.ndarray, sg: int, setting: np.ndarray | None = None) -> np.ndarray:
    """Whether reflections are systematically absent in space group ``sg``.

    Args:
        hkl: (M, 3) integer Miller indices of the cell.
        sg: space group 1..230.
        setting: (3, 3) integer M with h_std = hkl @ M (default: the cell is the ITA standard
            setting).

    Returns:
        (M,) bool, True where every structure of ``sg`` has F(hkl) = 0.
    """
    h = np.asarray(hkl, np.int64).reshape(-1, 3)
    if setting is not None:
        h = h @ np.asarray(setting, np.int64)
    return _absent_by_ops(h, *operations(int(sg)))


# ---------------------------------------------------------------------------------------------
# the 99 extinction groups
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ExtinctionGroup:
    """One extinction group (space groups with the same absences up to setting).

    Attributes:
        number: 1..99 (``data/sg_extinction_groups.csv``; triclinic = 99).
        representative: member of highest order (lowest number among equals), e.g. Pnma for
            Pna2₁/Pnma; its standard setting is the group's reference setting.
        members: member space groups (1..230), ascending.
        symbols: their Hermann–Mauguin symbols (spglib spelling).
        crystal_systems: crystal systems of the members (trigonal and hexagonal can mix).
        metric: the metric system of cells that can carry the group (one of METRIC_SYSTEMS).
        centring: lattice letter of the representative's standard setting (P A C I F R).
    """

    number: int
    representative: int
    members: tuple[int, ...]
    symbols: tuple[str, ...]
    crystal_systems: tuple[str, ...]
    metric: str
    centring: str


@lru_cache(maxsize=1)
def extinction_group_table() -> tuple[ExtinctionGroup, ...]:
    """The 99 extinction groups, entry ``g-1`` is group ``g``."""
    rows = space_group_table()
    metric_of = {cs: m for m, fam in METRIC_FAMILY.items() for cs in fam}
    out = []
    for g in range(1, N_GROUPS + 1):
        mem = [r for r in rows if r["extinction_group"] == g]
        rep = max(mem, key=lambda r: (r["n_ops"], -r["number"]))
        systems = tuple(dict.fromkeys(str(r["crystal_system"]) for r in mem))
        out.append(ExtinctionGroup(g, int(rep["number"]), tuple(int(r["number"]) for r in mem),
                                   tuple(str(r["symbol"]) for r in mem), systems,
                                   metric_of[systems[0]], str(rep["centring"])))
    return tuple(out)


def group_absences(hkl: np.ndarray, groups: np.ndarray | None = None) -> np.ndarray:
    """Absences of extinction groups in their reference setting (the representative's ITA one).

    Args:
        hkl: (M, 3) integer Miller indices.
        groups: (G,) group numbers 1..99 (default all 99).

    Returns:
        (G, M) bool, row i for ``groups[i]``.
    """
    table = extinction_group_table()
    groups = np.arange(1, N_GROUPS + 1) if groups is None else np.asarray(groups).ravel()
    return np.stack([absent(hkl, table[int(g) - 1].representative) for g in groups]).reshape(
        len(groups), -1)


# ---------------------------------------------------------------------------------------------
# settings and the per-metric instance tables
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Setting:
    """A setting of the cell relative to the ITA standard one.

    Attributes:
        label: ITA-style name of the cell's axes/cell choice (``"cab"``, ``"b2 a<->c"``, ``"rev"``).
        matrix: (3, 3) int M, unimodular: h_std = h_cell @ M.
    """

    label: str
    matrix: tuple[tuple[int, ...], ...]

    @property
    def m(self) -> np.ndarray:
        return np.array(self.matrix, np.int64)


def _from_basis(label: str, p: list[list[int]]) -> Setting:
    """Setting of the basis change (a', b', c') = (a, b, c) P: Miller indices h' = h P."""
    m = np.rint(np.linalg.inv(np.array(p, float))).astype(np.int64)
    return Setting(label, tuple(map(tuple, m.tolist())))


def _orthorhombic() -> tuple[Setting, ...]:
    out = []
    for perm in itertools.permutations(range(3)):  # cell axis j = standard axis perm[j]
        p = np.zeros((3, 3), int)
        p[list(perm), [0, 1, 2]] = 1
        out.append(_from_basis("".join("abc"[i] for i in perm), p.tolist()))
    return tuple(out)


def _monoclinic() -> tuple[Setting, ...]:
    # ITA unique axis b: cell choice 2 a' = -a-c, c' = a (C2/c -> A2/n); choice 3 a' = c,
    # c' = -a-c (-> I2/a); then optionally a <-> c (b -> -b keeps the cell right-handed)
    choices = {"b1": np.eye(3, dtype=int), "b2": np.array([[-1, 0, 1], [0, 1, 0], [-1, 0, 0]]),
               "b3": np.array([[0, 0, -1], [0, 1, 0], [1, 0, -1]])}
    swap = np.array([[0, 0, 1], [0, -1, 0], [1, 0, 0]])
    return tuple(_from_basis(lab + sfx, (p @ s).tolist()) for sfx, s in
                 (("", np.eye(3, dtype=int)), (" a<->c", swap)) for lab, p in choices.items())


_ID = _from_basis("abc", np.eye(3, dtype=int).tolist())
_SWAP_AB = _from_basis("ba-c", [[0, 1, 0], [1, 0, 0], [0, 0, -1]])
SETTINGS: dict[str, tuple[Setting, ...]] = {
    "triclinic": (_ID,),
    "monoclinic": _monoclinic(),
    "orthorhombic": _orthorhombic(),
    # a<->b is a symmetry of the metric; kept so that any group it would change is covered
    # (deduplication drops it where the absences agree, which is everywhere in practice)
    "tetragonal": (_ID, _SWAP_AB),
    # obverse/reverse R: kept for hkl bookkeeping; a powder cannot tell them apart (the reverse
    # hkl set is the obverse one with h <-> k, which the hexagonal metric maps onto the same Q)
    "hexagonal": (_ID, _from_basis("rev", [[-1, 0, 0], [0, -1, 0], [0, 0, 1]]), _SWAP_AB),
    "cubic": (_ID,),
}
REFERENCE_HKL = hkl_box(8, 8, 8)  # decides which settings differ: indices up to 8 see every 1/12 phase


@dataclass(frozen=True)
class Instance:
    """One distinct hypothesis: an extinction group seen in one setting (via one member SG)."""

    group: int
    sg: int
    setting: Setting


class SettingTable:
    """All distinct (group, setting) absence patterns a cell of one metric system can show.

    Attributes:
        system: metric system.
        instances: (n,) :class:`Instance` list, grouped by ascending group number.
        group_of: (n,) int group number of each instance.
    """

    def __init__(self, system: str) -> None:
        if system not in METRIC_FAMILY:
            raise ValueError(f"unknown metric system {system!r}; valid: {METRIC_SYSTEMS}")
        self.system = system
        keys: dict[tuple, int] = {}  # (R', t') in the cell frame -> condition index
        inst_conds, instances, seen = [], [], {}
        for grp in extinction_group_table():
            if grp.metric != system:
                continue
            # representative first, so that its standard setting names the first instance
            for sg in (grp.representative,) + tuple(m for m in grp.members if m != grp.representative):
                rot, t12 = operations(sg)
                keep = np.any(t12 != 0, axis=1)
                for st in SETTINGS[system]:
                    m = st.m
                    minv = np.rint(np.linalg.inv(m)).astype(np.int64)
                    rc = np.einsum("ij,njk,kl->nil", m, rot[keep], minv)  # R' = M R M^-1
                    tc = (t12[keep] @ m.T) % 12  # t' = M t
                    ids = frozenset(keys.setdefault((r.tobytes(), t.tobytes()), len(keys))
                                    for r, t in zip(rc, tc))
                    if ids in seen:
                        continue
                    seen[ids] = len(instances)
                    inst_conds.append(ids)
                    instances.append(Instance(grp.number, sg, st))
        self._rot = np.array([np.frombuffer(k[0], np.int64).reshape(3, 3) for k in keys]).reshape(-1, 3, 3)
        self._t12 = np.array([np.frombuffer(k[1], np.int64) for k in keys]).reshape(-1, 3)
        self._urot, self._rid = (np.unique(self._rot, axis=0, return_inverse=True) if len(keys)
                                 else (np.zeros((0, 3, 3), np.int64), np.zeros(0, np.int64)))
        inc = np.zeros((len(instances), len(keys)), np.float32)
        for i, ids in enumerate(inst_conds):
            inc[i, list(ids)] = 1.0
        self._inc = inc
        self._prepare()
        # distinct condition sets can still extinguish the same reflections (e.g. a screw
        # condition implied by a glide one): keep one instance per group and absence pattern
        # (two groups may share a pattern, e.g. P3_1 and P6_2: both stay, as separate hypotheses)
        ref = self.absences(REFERENCE_HKL)
        grp = np.array([i.group for i in instances])[:, None]
        _, first = np.unique(np.hstack([grp, ref]), axis=0, return_index=True)
        keep = np.sort(first)
        self.instances = tuple(instances[i] for i in keep)
        self._inc = inc[keep]
        self.group_of = np.array([i.group for i in self.instances], np.int64)

    def _prepare(self) -> None:
        """Arrays the evaluation reads: stacked (R - 1) (3, D, 3), condition ids per R, t' (3, C)."""
        eye = np.eye(3, dtype=np.int64)
        self._rmi = np.stack([r - eye for r in self._urot], axis=1).astype(np.float64) \
            if len(self._urot) else np.zeros((3, 0, 3))  # (3, D, 3): (R_d - 1)[i, j]
        self._cid = [np.flatnonzero(self._rid.ravel() == d) for d in range(len(self._urot))]
        self._t12f = self._t12.T.astype(np.float64)

    def absences(self, hkl: np.ndarray) -> np.ndarray:
        """(n_instances, M) bool: absences of every instance for the cell's ``hkl`` (M, 3)."""
        h = np.asarray(hkl, np.int64).reshape(-1, 3)
        out = np.zeros((self._inc.shape[0], len(h)), bool)
        if len(self._urot) == 0 or len(h) == 0:
            return out
        # h R = h for every distinct R at once: w = h (R - 1) is an integer vector with
        # |w_i| < base/2, so w = 0 iff w . (1, base, base^2) = 0; one (M,3) @ (3,D) float product
        # (exact below 2^53) instead of a (M, 3D) comparison
        hf = h.astype(np.float64)
        base = 2.0 * 3.0 * float(np.abs(h).max()) + 1.0
        fixed = (hf @ (self._rmi @ np.array([1.0, base, base * base]))) == 0  # (M, D)
        for d in range(len(self._urot)):
            # only the reflections R fixes can be extinguished by R's operations: a zone or a
            # row for all but R = 1 (centring), so each product below is small
            idx = np.flatnonzero(fixed[:, d])
            if len(idx) == 0:
                continue
            cid = self._cid[d]
            bad = (np.fmod(hf[idx] @ self._t12f[:, cid], 12.0) != 0).astype(np.float32)  # (m, c)
            out[:, idx] |= (self._inc[:, cid] @ bad.T) > 0.5
        return out


@lru_cache(maxsize=len(METRIC_SYSTEMS))
def setting_table(system: str) -> SettingTable:
    """The cached :class:`SettingTable` of a metric system."""
    return SettingTable(system)


def setting_absences(hkl: np.ndarray, system: str) -> tuple[tuple[Instance, ...], np.ndarray]:
    """Absences of every distinct (group, setting) instance of a metric system.

    Args:
        hkl: (M, 3) Miller indices of a cell of metric ``system``.
        system: one of METRIC_SYSTEMS.

    Returns:
        (instances, table): the (n,) instances and their (n, M) bool absences.
    """
    tab = setting_table(system)
    return tab.instances, tab.absences(hkl)
