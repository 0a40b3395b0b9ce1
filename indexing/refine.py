"""Least-squares refinement of a trial cell with a zero shift, and the hkl of every line.

Q_obs = Q(2θ_obs) and 2θ_obs = 2θ_true + z (goniometer zero error z), so to first order
Q_obs = rowsᵀ x + z · dQ/d2θ: linear in the free metric parameters x *and* z. Each iteration
assigns every line to its nearest calculated reflection, then solves the weighted linear least
squares (weights 1/σ_Q) over the lines indexed within tolerance; three iterations converge from a
trial solution (the assignment rarely changes after the first). Lines left unindexed are kept
out of the fit, so an impurity line does not pull the cell (docs/methods/indexing.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from indexing.systems import System
from utils.lattice import dq_d2theta, hkl_box, hkl_terms, metric_from_params

CENTRINGS = {
    "P": lambda h, k, l: np.ones_like(h, bool),
    "I": lambda h, k, l: (h + k + l) % 2 == 0,
    "F": lambda h, k, l: ((h % 2) == (k % 2)) & ((k % 2) == (l % 2)),
    "C": lambda h, k, l: (h + k) % 2 == 0,
    "A": lambda h, k, l: (k + l) % 2 == 0,
    "B": lambda h, k, l: (h + l) % 2 == 0,
    # obverse, hexagonal axes; the reverse setting gives the same Q values (a 60° rotation about
    # c), so a powder pattern cannot and need not tell them apart
    "R": lambda h, k, l: (-h + k + l) % 3 == 0,
}
# centrings worth testing per metric system, most restrictive first
SYSTEM_CENTRINGS = {
    "cubic": ("F", "I", "P"),
    "tetragonal": ("I", "P"),
    "hexagonal": ("R", "P"),
    "orthorhombic": ("F", "I", "C", "A", "B", "P"),
    "monoclinic": ("C", "A", "I", "P"),
    "triclinic": ("P",),
}
CENTRING_FACTOR = {"P": 1, "I": 2, "C": 2, "A": 2, "B": 2, "F": 4, "R": 3}


@dataclass
class Fit:
    """A refined cell: full metric parameters, zero shift and the lines' indexing."""

    system: str
    params: np.ndarray                  # (6,) A..F in the system's conventional setting
    zero: float                         # zero shift z [deg 2θ]: 2θ_obs = 2θ_true + z
    indexed: np.ndarray                 # (N,) bool, lines within tolerance
    residual_q: np.ndarray              # (N,) Q_obs(corrected) − Q_calc of the nearest reflection
    hkl: np.ndarray                     # (N, 3) nearest reflection of each line
    centring: str = "P"
    calc_q: np.ndarray = field(default_factory=lambda: np.zeros(0))   # (M,) sorted, after centring
    calc_hkl: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), int))
    alternatives: list = field(default_factory=list)   # per line: (k, 3) hkl within tolerance


def calc_reflections(params: np.ndarray, q_max: float, max_index: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """All reflections (half sphere) of metric ``params`` with Q ≤ q_max: (hkl (M, 3), Q (M,)), by Q."""
    g = np.linalg.inv(metric_from_params(params))
    lim = np.minimum(np.ceil(np.sqrt(np.maximum(np.diag(g), 0) * q_max)), max_index).astype(int)
    hkl = hkl_box(*lim)
    q = hkl_terms(hkl) @ params
    keep = q <= q_max
    hkl, q = hkl[keep], q[keep]
    order = np.argsort(q, kind="stable")
    return hkl[order], q[order]


def _nearest(calc_q: np.ndarray, q: np.ndarray) -> np.ndarray:
    j = np.clip(np.searchsorted(calc_q, q), 1, max(calc_q.size - 1, 1))
    left = np.abs(q - calc_q[j - 1])
    right = np.abs(calc_q[np.minimum(j, calc_q.size - 1)] - q)
    return np.where(left <= right, j - 1, np.minimum(j, calc_q.size - 1))


def refine(sys_: System, params: np.ndarray, two_theta: np.ndarray, wavelength: float,
           q: np.ndarray, sigma_q: np.ndarray, tol_q: np.ndarray, fit_zero: bool = True,
           iterations: int = 3) -> Fit | None:
    """Refine a trial metric against all lines; None when it collapses (no valid metric)."""
    n = q.size
    dq = dq_d2theta(two_theta, wavelength)
    x = np.linalg.lstsq(sys_.expand, params, rcond=None)[0]
    zero = 0.0
    q_max = float(q.max()) * 1.03
    w = 1.0 / np.maximum(sigma_q, 1e-9)
    n_par = sys_.n_free + (1 if fit_zero else 0)
    for it in range(iterations + 1):
        p = sys_.full(x)
        assigned = _assign(p, q - zero * dq, q_max, tol_q)
        if assigned is None:
            return None
        hkl, cq, qc, j, ok = assigned
        if it == iterations or ok.sum() < n_par + 1:
            break
        rows = sys_.rows(hkl[j[ok]])
        if fit_zero and ok.sum() >= n_par + 3:
            design = np.concatenate([rows, dq[ok, None]], axis=1)
        else:
            design = rows
        sol = np.linalg.lstsq(design * w[ok, None], q[ok] * w[ok], rcond=None)[0]
        x = sol[:sys_.n_free]
        zero = float(sol[sys_.n_free]) if design.shape[1] > sys_.n_free else 0.0
        if abs(zero) > 0.3:   # a zero error beyond 0.3° is not an instrument's: refuse it
            zero = 0.0
    res = qc - cq[j]
    alts = [hkl[np.abs(cq - qc[i]) <= tol_q[i]] for i in range(n)]
    fit = Fit(sys_.name, p, zero, ok, res, hkl[j], calc_q=cq, calc_hkl=hkl, alternatives=alts)
    fit.centring = lattice_centring(fit)
    keep = CENTRINGS[fit.centring](*fit.calc_hkl.T)
    fit.calc_q, fit.calc_hkl = fit.calc_q[keep], fit.calc_hkl[keep]
    return fit


def _assign(p: np.ndarray, qc: np.ndarray, q_max: float, tol_q: np.ndarray):
    """Reflections of metric ``p`` and each corrected line's nearest one: (hkl, calc Q, qc,
    nearest index, within tolerance), or None for an invalid metric."""
    if not (p[0] > 0 and p[1] > 0 and p[2] > 0) or np.linalg.det(metric_from_params(p)) <= 0:
        return None
    hkl, cq = calc_reflections(p, q_max)
    if cq.size == 0:
        return None
    j = _nearest(cq, qc)
    return hkl, cq, qc, j, np.abs(qc - cq[j]) <= tol_q


def lattice_centring(fit: Fit) -> str:
    """The most restrictive centring that every indexed line obeys (through some hkl within
    tolerance); P when none. Needs ≥ 6 indexed lines to claim a centring."""
    idx = np.flatnonzero(fit.indexed)
    if idx.size < 6:
        return "P"
    for c in SYSTEM_CENTRINGS[fit.system]:
        cond = CENTRINGS[c]
        if all(np.any(cond(*fit.alternatives[i].T)) for i in idx):
            return c
    return "P"
