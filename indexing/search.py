"""Trial-and-error cell search on the low-angle lines, vectorised, for the six metric systems.

Method (TREOR-style, Werner, Eriksson & Westdahl, J. Appl. Cryst. 18, 367 (1985)): assign trial
low-index hkl to ``n_free`` of the first lines, solve the linear system for the reciprocal metric
(Q is linear in it, docs/methods/indexing.md), and keep the trials that index most of the
first lines. All combinations are solved at once with numpy; trials are pruned in two rounds
(the first 8 lines, then all) before the least-squares refinement (``indexing.refine``).

Monoclinic (4 parameters) would need ~10⁶ four-line trials, so it is searched as Ito's zone method
does it (Visser, J. Appl. Cryst. 2, 89 (1969)), in two steps: the oblique h0l zone (A, C, E) from
three lines, then B from one more line — ~10⁴ trials. Triclinic: the same with a general zone
(three lines → a 2-D lattice) and three more lines for the remaining parameters, on fewer lines.
Axis permutations are factored out where the system allows it (orthorhombic: the first trial
line's hkl is taken with h ≥ k ≥ l).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np

from indexing.score import count_indexed
from indexing.systems import System, cubic_n_values, system, trial_hkl
from utils.lattice import metric_from_params

V_MIN, V_MAX = 20.0, 6000.0   # Å³: plausible primitive cells
N_PARTIAL = 12                # orthorhombic partial fits handed to the monoclinic search
# the conventional cells searched may be centred: F cubic/orthorhombic hold 4 primitive cells
V_MAX_CONV = {"cubic": 4 * V_MAX, "orthorhombic": 4 * V_MAX, "hexagonal": 3 * V_MAX,
              "tetragonal": 2 * V_MAX, "monoclinic": 2 * V_MAX, "triclinic": V_MAX}


def _volume(params: np.ndarray) -> np.ndarray:
    det = np.linalg.det(metric_from_params(params))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(det > 0, 1.0 / np.sqrt(np.abs(det)), np.inf)


def _plausible(params: np.ndarray, v_max: float = V_MAX) -> np.ndarray:
    """Positive-definite metrics with a plausible volume."""
    if len(params) == 0:
        return np.zeros(0, bool)
    a, b, c, d, e, f = (params[:, i] for i in range(6))
    ok = np.all(np.isfinite(params), axis=1) & (a > 0) & (b > 0) & (c > 0)
    # Sylvester's criterion on G* (leading minors > 0): positive definite
    ok &= 4 * a * b > d * d
    det = a * b * c + d * e * f / 4 - a * f * f / 4 - b * e * e / 4 - c * d * d / 4
    ok &= det > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        v = np.where(ok, 1.0 / np.sqrt(np.where(ok, det, 1.0)), np.inf)
    return ok & (v >= V_MIN) & (v <= v_max)


def metric_key(params: np.ndarray, digits: float = 2e3) -> np.ndarray:
    """(T, 6) integer keys equal for metrics that agree to ~1/``digits`` relative: log of the
    diagonal, off-diagonal terms relative to their diagonal pair (never scale-normalised, so
    cells of different size keep different keys)."""
    p = np.atleast_2d(params)
    diag = np.log(np.abs(p[:, :3]) + 1e-300)
    pairs = ((0, 1), (0, 2), (1, 2))
    off = np.stack([p[:, 3 + t] / np.sqrt(np.abs(p[:, i] * p[:, j]) + 1e-300)
                    for t, (i, j) in enumerate(pairs)], axis=1)
    return np.rint(np.concatenate([diag, off], axis=1) * digits).astype(np.int64)


def _dedupe(params: np.ndarray) -> np.ndarray:
    if len(params) == 0:
        return params
    _, first = np.unique(metric_key(params), axis=0, return_index=True)
    return params[np.sort(first)]


def solve_trials(sys_: System, q: np.ndarray, lines: np.ndarray, rows_pool: np.ndarray,
                 first_rows: np.ndarray | None = None) -> np.ndarray:
    """Full metrics (T, 6) of every assignment of ``rows_pool`` rows to every combination of
    ``n_free`` lines taken from ``lines`` (indices into q).

    Args:
        first_rows: optional smaller pool for the first line of each combination (symmetry).
    """
    n = sys_.n_free
    combos = np.array(list(combinations(lines, n)), dtype=np.int64)
    if len(combos) == 0:
        return np.zeros((0, 6))
    pools = [first_rows if (first_rows is not None and i == 0) else rows_pool for i in range(n)]
    grids = np.meshgrid(*[np.arange(len(p)) for p in pools], indexing="ij")
    assign = np.stack([g.ravel() for g in grids], axis=1)                 # (R, n)
    mats = np.stack([pools[i][assign[:, i]] for i in range(n)], axis=1)   # (R, n, n_free)
    det = np.linalg.det(mats)
    good = np.abs(det) > 1e-9
    mats = mats[good]
    inv = np.linalg.inv(mats)                                             # (R', n, n)
    rhs = q[combos]                                                       # (C, n)
    x = np.einsum("rij,cj->cri", inv, rhs).reshape(-1, n)
    return sys_.full(x)


def cubic_trials(q: np.ndarray, n_lines: int = 4, n_max: int = 40) -> np.ndarray:
    ns = np.flatnonzero(cubic_n_values(n_max))
    a = (q[:n_lines, None] / ns[None, :]).ravel()
    return system("cubic").full(a[:, None])


def _prune(params: np.ndarray, q: np.ndarray, tol: np.ndarray, kind: str, keep: int,
           n_first: int = 8, v_max: float = V_MAX, partial: list | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """Best ``keep`` trials: by lines indexed among the first ``n_first``, then among all, ties
    broken by the smaller volume. ``partial``: a list that receives the best trials that miss up
    to 4 of the first lines (orthorhombic fits of a monoclinic lattice's h0l-free lines)."""
    params = params[_plausible(params, v_max)]
    if len(params) == 0:
        return params, np.zeros(0, np.int64)
    m = min(n_first, q.size)
    if partial is not None:
        c0 = count_indexed(params, q[:m], tol[:m], kind, max_miss=4)
        ok = np.flatnonzero(c0 >= 0)
        best = ok[np.lexsort((_volume(params[ok]), -c0[ok]))]
        partial.extend(_dedupe(params[best[:200]])[:N_PARTIAL])
        c1 = np.where(c0 >= m - 1, c0, -1)
    else:
        c1 = count_indexed(params, q[:m], tol[:m], kind, max_miss=1)
    if not np.any(c1 >= 0):   # nothing indexes the first lines: keep the best at a looser bar
        c1 = count_indexed(params, q[:m], tol[:m], kind, max_miss=3)
    params = _dedupe(params[c1 >= 0])
    if len(params) == 0:
        return params, np.zeros(0, np.int64)
    c2 = count_indexed(params, q, tol, kind)
    order = np.lexsort((_volume(params), -c2))[:keep]
    return params[order], c2[order]


def search_system(name: str, q: np.ndarray, tol: np.ndarray, keep: int = 30,
                  state: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Candidate metrics (K, 6) of one system for lines ``q`` (sorted) and their line counts.

    ``state``: a dict shared by the searches of one pattern (the orthorhombic search leaves its
    partial fits there for the monoclinic one)."""
    state = {} if state is None else state
    q = np.asarray(q, np.float64)
    sys_ = system(name)
    if name == "cubic":
        return _prune(cubic_trials(q), q, tol, "cubic", keep, v_max=V_MAX_CONV[name])
    if name in ("tetragonal", "hexagonal"):
        _, rows = trial_hkl(name, 3)
        # lines from the first 10: when c is short the first six are often all hk0 (or all 00l
        # when c is long), which cannot fix both parameters
        trials = solve_trials(sys_, q, np.arange(min(10, q.size)), rows[:30])
        return _prune(trials, q, tol, name, keep, v_max=V_MAX_CONV[name])
    if name == "orthorhombic":
        hkl, rows = trial_hkl(name, 2)
        canon = rows[(hkl[:, 0] >= hkl[:, 1]) & (hkl[:, 1] >= hkl[:, 2])]
        trials = solve_trials(sys_, q, np.arange(min(6, q.size)), rows, first_rows=canon)
        return _prune(trials, q, tol, "general", keep, v_max=V_MAX_CONV[name],
                      partial=state.setdefault("ortho_partial", []))
    if name == "monoclinic":
        return _monoclinic(q, tol, keep, state.get("ortho_partial", []))
    if name == "triclinic":
        return _triclinic(q, tol, keep)
    raise KeyError(name)


def _zone_trials(q: np.ndarray, tol: np.ndarray, zone_sys: System, zone_rows: np.ndarray, embed,
                 third_rows: np.ndarray, n_zone_lines: int, keep_zones: int) -> np.ndarray:
    """Two-step trials: a 2-D zone from lines of the first ``n_zone_lines``, then the remaining
    parameter (B) from the first lines with a k ≠ 0 trial hkl."""
    zones = solve_trials(zone_sys, q, np.arange(min(n_zone_lines, q.size)), zone_rows)
    zones = zones[np.all(np.isfinite(zones), axis=1)]
    if len(zones) == 0:
        return np.zeros((0, 6))
    full = embed(zones)                              # zone metrics with the missing axis huge
    full = _dedupe(full[_plausible_zone(full)])
    if len(full) == 0:
        return np.zeros((0, 6))
    m = min(12, q.size)
    c = count_indexed(full, q[:m], tol[:m], "general")
    full = full[np.lexsort((_volume2d(full), -c))[:keep_zones]]
    lines = np.arange(min(10, q.size))
    return np.concatenate([monoclinic_b_trials(p, q, lines, third_rows) for p in full])


def _plausible_zone(params: np.ndarray) -> np.ndarray:
    return np.all(np.isfinite(params), axis=1) & (params[:, 0] > 0) & (params[:, 2] > 0) & \
        (4 * params[:, 0] * params[:, 2] > params[:, 4] ** 2)


def _volume2d(params: np.ndarray) -> np.ndarray:
    return 1.0 / np.sqrt(np.maximum(params[:, 0] * params[:, 2] - params[:, 4] ** 2 / 4, 1e-12))


def monoclinic_b_trials(zone: np.ndarray, q: np.ndarray, lines: np.ndarray,
                        rows_hkl: np.ndarray) -> np.ndarray:
    """Monoclinic completion: B from each line and each trial hkl with k ≠ 0, given (A, C, E)."""
    a, _, c, _, e, _ = zone
    h, k, l = rows_hkl[:, 0], rows_hkl[:, 1], rows_hkl[:, 2]
    rest = q[lines, None] - (a * h * h + c * l * l + e * h * l)[None, :]
    b = (rest / (k * k)[None, :]).ravel()
    b = b[b > 0]
    out = np.tile(zone, (b.size, 1))
    out[:, 1] = b
    return out


def _monoclinic(q: np.ndarray, tol: np.ndarray, keep: int, seeds: list) -> tuple[np.ndarray, np.ndarray]:
    """Monoclinic (b unique): direct four-line trials with indices ≤ 1 (the common small cells),
    the zone route (h0l zone, then B) for cells whose first lines need index 2, and E added to
    the orthorhombic search's partial fits (``seeds``: they index the lines with h·l = 0)."""
    mono = system("monoclinic")
    small = np.array([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 0, 1), (-1, 0, 1),
                      (1, 1, 1), (-1, 1, 1)], np.float64)
    direct = solve_trials(mono, q, np.arange(min(6, q.size)), mono.rows(small))
    zone_sys = System("zone_h0l", np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 1],
                                            [0, 0, 0]], np.float64))
    # h0l trial rows: (h, 0, l) with h in −2..2, l in 0..2, one sign of E factored out (h ↦ −h)
    hl = [(h, 0, l) for h in range(-2, 3) for l in range(0, 3) if (h, l) != (0, 0) and not (l == 0 and h < 0)]
    zone_rows = zone_sys.rows(np.array(hl, np.float64))
    third = np.array([(h, k, l) for k in (1, 2) for h in range(-1, 2) for l in range(-1, 2)], np.float64)

    def embed(z: np.ndarray) -> np.ndarray:
        out = z.copy()
        out[:, 1] = 1e3          # B huge: no k ≠ 0 line while the zone is scored
        return out

    zoned = _zone_trials(q, tol, zone_sys, zone_rows, embed, third, n_zone_lines=7, keep_zones=25)
    seeded = [monoclinic_e_trials(p, q, np.arange(min(10, q.size))) for p in seeds]
    return _prune(np.concatenate([direct, zoned, *seeded]), q, tol, "general", keep,
                  v_max=V_MAX_CONV["monoclinic"])


_E_ROWS = np.array([(h, k, l) for h in (1, 2, -1, -2) for l in (1, 2) for k in (0, 1, 2)], np.float64)


def monoclinic_e_trials(ortho: np.ndarray, q: np.ndarray, lines: np.ndarray) -> np.ndarray:
    """Monoclinic completion of an orthorhombic fit (A, B, C): E from each line and trial hkl
    with h·l ≠ 0 (both axes of each orthorhombic axis pair taken as the monoclinic a, c)."""
    out = []
    for perm in ((0, 1, 2), (1, 2, 0), (2, 0, 1)):        # which axis is b (unique)
        a, b, c = ortho[perm[0]], ortho[perm[1]], ortho[perm[2]]
        h, k, l = _E_ROWS[:, 0], _E_ROWS[:, 1], _E_ROWS[:, 2]
        e = ((q[lines, None] - (a * h * h + b * k * k + c * l * l)[None, :]) / (h * l)[None, :]).ravel()
        p = np.zeros((e.size, 6))
        p[:, 0], p[:, 1], p[:, 2], p[:, 4] = a, b, c, e
        out.append(p)
    return np.concatenate(out)


def _triclinic(q: np.ndarray, tol: np.ndarray, keep: int) -> tuple[np.ndarray, np.ndarray]:
    """Triclinic: the three shortest reciprocal vectors among the first lines as a*, b*, c*
    (Q₁, Q₂, Q₃ ∈ the first 5 lines), the three angle terms from three more lines with trial
    hkl (110, 1-10, 101, 10-1, 011, 01-1, 111, …)."""
    sys_ = system("triclinic")
    n = min(q.size, 5)
    diag = np.array(list(combinations(range(n), 3)))
    mixed = np.array([(1, 1, 0), (1, -1, 0), (1, 0, 1), (1, 0, -1), (0, 1, 1), (0, 1, -1),
                      (1, 1, 1), (1, 1, -1), (1, -1, 1), (-1, 1, 1)], np.float64)
    mrows = sys_.rows(mixed)[:, 3:]                      # (M, 3) coefficients of D, E, F
    lines = np.arange(min(q.size, 9))
    out = []
    for i, j, k in diag:
        abc = np.array([q[i], q[j], q[k]])
        rest_lines = np.array([x for x in lines if x not in (i, j, k)])
        if rest_lines.size < 3:
            continue
        base = sys_.rows(mixed)[:, :3] @ abc              # (M,) A h² + B k² + C l² part
        combos = np.array(list(combinations(rest_lines, 3)))
        idx = np.array(list(combinations(range(len(mixed)), 3)))
        mats = mrows[idx]                                 # (R, 3, 3)
        good = np.abs(np.linalg.det(mats)) > 1e-9
        inv = np.linalg.inv(mats[good])
        rhs = q[combos][:, None, :] - base[idx[good]][None, :, :]   # (C, R, 3)
        def_ = np.einsum("rij,crj->cri", inv, rhs).reshape(-1, 3)
        p = np.concatenate([np.tile(abc, (len(def_), 1)), def_], axis=1)
        out.append(p)
    if not out:
        return np.zeros((0, 6)), np.zeros(0, np.int64)
    return _prune(np.concatenate(out), q, tol, "general", keep)
