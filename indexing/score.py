"""Fast vectorised test of many trial cells against the observed lines: which lines each trial
indexes.

A line Q is indexed by a cell when some integer (h, k, l) has |Q(hkl) − Q| ≤ tol. Instead of
enumerating all hkl of every trial, we loop over the two short axes' indices (h, k) and solve the
quadratic C l² + (E h + F k) l + (A h² + B k² + D hk − Q) = 0 for the index l along the longest
axis, rounding both roots to integers; so the work per trial and line is (2H+1)(K+1), independent
of the long axis — which is what makes long-axis (c ≫ a) cells as cheap as short ones.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from utils.lattice import metric_from_params, metric_params

# trials scored in chunks so that the (trials × lines × h × k) work array stays ~ 10⁷ elements
_CHUNK_ELEMS = 4_000_000


def long_axis_last(params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Permute the axes of each trial so that the longest direct axis is the third.

    Returns:
        (params (T, 6) permuted, direct axis lengths² (T, 3) in the permuted order).
    """
    g_star = metric_from_params(params)
    a, b, c, d, e, f = (params[:, i] for i in range(6))
    # diagonal of the direct metric G = adj(G*) / det(G*), without inverting near-singular trials
    det = np.linalg.det(g_star)
    det = np.where(np.abs(det) > 1e-300, det, 1e-300)
    diag = np.stack([b * c - f * f / 4, a * c - e * e / 4, a * b - d * d / 4], axis=1) / det[:, None]
    longest = np.argmax(diag, axis=1)
    perms = np.array([[1, 2, 0], [0, 2, 1], [0, 1, 2]])[longest]  # longest axis → last
    idx = np.arange(len(params))[:, None]
    gp = g_star[idx[:, :, None], perms[:, :, None], perms[:, None, :]]
    return metric_params(gp), diag[idx, perms]


def index_residuals(params: np.ndarray, q: np.ndarray, hmax: int, kmax: int,
                    signed_h: bool) -> np.ndarray:
    """Smallest |Q(hkl) − q| over hkl, for each trial and line: (T, N).

    Args:
        params: (T, 6) metrics, longest axis last (see :func:`long_axis_last`).
        q: (N,) observed Q.
        hmax, kmax: index ranges of the two short axes (h in [−hmax, hmax] when ``signed_h``,
            else [0, hmax]; k in [0, kmax] — k ↦ −k together with h ↦ −h, l ↦ −l is Friedel's).
        signed_h: whether h takes negative values (needed when D or E ≠ 0 and the sign matters).
    """
    t = len(params)
    h = np.arange(-hmax if signed_h else 0, hmax + 1, dtype=np.float64)
    k = np.arange(0, kmax + 1, dtype=np.float64)
    hh, kk = (a.ravel() for a in np.meshgrid(h, k, indexing="ij"))  # (P,)
    out = np.empty((t, q.size))
    step = max(1, _CHUNK_ELEMS // max(1, q.size * hh.size))
    for s in range(0, t, step):
        p = params[s:s + step]
        a_, b_, c_, d_, e_, f_ = (p[:, i, None, None] for i in range(6))  # (t, 1, 1)
        const = a_ * hh ** 2 + b_ * kk ** 2 + d_ * hh * kk                  # (t, 1, P)
        lin = e_ * hh + f_ * kk                                             # (t, 1, P)
        rest = q[None, :, None] - const                                     # (t, N, P)
        disc = np.maximum(lin * lin + 4.0 * c_ * rest, 0.0)
        root = np.sqrt(disc)
        best = np.full(rest.shape, np.inf)
        for sign in (1.0, -1.0):
            l = np.rint((-lin + sign * root) / (2.0 * c_))
            res = np.abs(rest - c_ * l * l - lin * l)
            best = np.minimum(best, res)
        # l = 0 explicitly (rounding can skip it when the root is complex)
        best = np.minimum(best, np.abs(rest))
        # (h, k, l) = (0, 0, 0) is not a reflection: q > 0 makes its residual q itself, harmless
        out[s:s + step] = best.min(axis=2)
    return out


@cache
def _sums_of_squares(kind: str, n_max: int = 4096) -> np.ndarray:
    """(n_max+1,) bool: values of h² + k² + l² ("cubic"), h² + k² ("tetragonal") or
    h² + hk + k² ("hexagonal") over integers, 0 excluded for cubic."""
    r = np.arange(int(np.sqrt(n_max)) + 2)
    if kind == "cubic":
        v = (r[:, None, None] ** 2 + r[None, :, None] ** 2 + r[None, None, :] ** 2).ravel()
    elif kind == "tetragonal":
        v = (r[:, None] ** 2 + r[None, :] ** 2).ravel()
    else:
        v = (r[:, None] ** 2 + r[:, None] * r[None, :] + r[None, :] ** 2).ravel()
    ok = np.zeros(n_max + 1, bool)
    ok[v[v <= n_max]] = True
    if kind == "cubic":
        ok[0] = False
    return ok


def _uniaxial_residuals(params: np.ndarray, q: np.ndarray, kind: str, lcap: int = 40) -> np.ndarray:
    """(T, N) residuals for cubic (Q = A N) and tetragonal/hexagonal (Q = A m + C l²) metrics, by
    table lookup of the allowed N or m: exact for any cell size, no index cap on a, b."""
    table = _sums_of_squares(kind)
    a = params[:, 0][:, None]
    if kind == "cubic":
        n = np.clip(np.rint(q[None, :] / a), 0, table.size - 1).astype(np.int64)
        res = np.abs(q[None, :] - a * n)
        return np.where(table[n], res, np.inf)
    c = params[:, 2]
    lmax = int(min(lcap, np.ceil(np.sqrt(q.max() / max(float(c.min()), 1e-12)))))
    best = np.full((len(params), q.size), np.inf)
    for l in range(lmax + 1):
        rest = q[None, :] - (c * l * l)[:, None]
        m = np.rint(rest / a)
        ok = (m >= 0) & (m < table.size)
        mi = np.clip(m, 0, table.size - 1).astype(np.int64)
        res = np.where(ok & table[mi] & ((mi > 0) | (l > 0)), np.abs(rest - a * m), np.inf)
        best = np.minimum(best, res)
    return best


def residuals(params: np.ndarray, q: np.ndarray, kind: str, hcap: int = 10) -> np.ndarray:
    """(T, N) smallest |Q(hkl) − q| of each trial and line, for a metric ``kind``: "cubic",
    "tetragonal", "hexagonal" (table lookup) or "general" (quadratic solve, signed h)."""
    if kind != "general":
        return _uniaxial_residuals(params, q, kind)
    pp, diag = long_axis_last(params)
    need = np.ceil(np.sqrt(diag[:, :2] * float(q.max()))).clip(1, hcap).astype(np.int64)  # |h| ≤ a √Q
    out = np.empty((len(params), q.size))
    # trials grouped by their index ranges, so a big cell gets the range it needs and a small
    # one does not pay for it
    keys = need[:, 0] * (hcap + 1) + need[:, 1]
    for key in np.unique(keys):
        sel = np.flatnonzero(keys == key)
        out[sel] = index_residuals(pp[sel], q, int(key // (hcap + 1)), int(key % (hcap + 1)), True)
    return out


def count_indexed(params: np.ndarray, q: np.ndarray, tol: np.ndarray, kind: str,
                  max_miss: int | None = None) -> np.ndarray:
    """(T,) number of lines of ``q`` indexed within ``tol`` by each trial metric ``params`` (T, 6).

    With ``max_miss``, lines are tested one at a time and a trial is dropped as soon as it has
    missed more than ``max_miss`` lines (its count is then returned as −1): most random trials
    fail on the first lines tested, so the work shrinks ~10× (early rejection, as in TREOR)."""
    if len(params) == 0:
        return np.zeros(0, np.int64)
    if max_miss is None:
        return (residuals(params, q, kind) <= tol[None, :]).sum(axis=1)
    alive = np.arange(len(params))
    miss = np.zeros(len(params), np.int64)
    # the last lines first: trials are solved from the first lines, which they index by
    # construction, so the later lines reject wrong trials soonest
    for j in range(q.size - 1, -1, -1):
        if alive.size == 0:
            break
        res = residuals(params[alive], q[j:j + 1], kind)[:, 0]
        miss[alive] += res > tol[j]
        alive = alive[miss[alive] <= max_miss]
    out = q.size - miss
    dead = np.ones(len(params), bool)
    dead[alive] = False
    out[dead] = -1
    return out
