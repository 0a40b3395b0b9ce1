"""Peak profiles and their least-squares fit on a window: pseudo-Voigt lines, Kα1/Kα2 doublets.

A line is a pseudo-Voigt of unit area, η·L + (1 − η)·G with a common FWHM f (G. K. Wertheim et al.,
Rev. Sci. Instrum. 45, 1369 (1974); the TCH form used by the simulator, P. Thompson, D. E. Cox &
J. B. Hastings, J. Appl. Cryst. 20, 79 (1987), is a pseudo-Voigt too). A reflection measured with
an unmonochromated anode is a doublet: the Kα1 line at 2θ₁ and a Kα2 line of the same shape at
2θ₂ = 2 asin(λ₂/λ₁ · sin θ₁) (Bragg's law) with ``ratio`` times its area.

:func:`fit_windows` fits a few overlapping doublets together on each of many windows at once:
per line its Kα1 position, area and FWHM, one η per window (neighbouring lines share the instrument
and the sample, and a free η per weak line is poorly determined) and a linear background (absorbs
what the global background estimate left, and the tails of lines outside the window). Residuals
are weighted by the noise σ, so the covariance gives the position uncertainty (scaled by √χ²_red
when the model misfits).

The solver is a Levenberg–Marquardt iteration (K. Levenberg, Q. Appl. Math. 2, 164 (1944);
D. W. Marquardt, J. SIAM 11, 431 (1963); damping scaled by diag(JᵀJ), bounds by projection)
vectorised over the windows of a pattern: numpy arrays (windows, points, lines) instead of one
``scipy.optimize.least_squares`` call per window, whose Python overhead (~15 ms a window, 30–60
windows a pattern) was the cost of the first version.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_LN2 = math.log(2.0)
# window parameters (of η, b₀, b₁) marginalised in a line's significance: the background level
# (a weak line trades area against it); holding it too let ~5σ noise bumps pass on synthetic
# Poisson patterns, freeing the slope too lost 3 % recall of lab lines ≥ 3 % for nothing
SIGNIF_SHARED = (1,)
_G0 = 2.0 * math.sqrt(_LN2 / math.pi)  # peak height × FWHM of a unit-area Gaussian
_L0 = 2.0 / math.pi  # the same for a Lorentzian


def ka2_position(two_theta: np.ndarray, ratio_lambda: float) -> np.ndarray:
    """2θ₂ [deg] of the Kα2 companion of lines at ``two_theta`` (Kα1) for λ₂/λ₁ = ``ratio_lambda``."""
    s = np.sin(np.radians(np.asarray(two_theta, np.float64)) / 2.0) * ratio_lambda
    return np.degrees(2.0 * np.arcsin(np.clip(s, 0.0, 1.0)))


def _ka2_slope(two_theta: np.ndarray, ratio_lambda: float) -> np.ndarray:
    """d2θ₂/d2θ₁ = (λ₂/λ₁) cos θ₁ / cos θ₂."""
    t1 = np.radians(two_theta) / 2.0
    s2 = np.clip(np.sin(t1) * ratio_lambda, 0.0, 1.0 - 1e-12)
    return ratio_lambda * np.cos(t1) / np.sqrt(1.0 - s2 * s2)


def pseudo_voigt(x: np.ndarray, fwhm: np.ndarray, eta: float | np.ndarray) -> np.ndarray:
    """Unit-area pseudo-Voigt at offsets ``x`` (same unit as ``fwhm``)."""
    z = (2.0 * x / fwhm) ** 2
    return (eta * _L0 / (1.0 + z) + (1.0 - eta) * _G0 * np.exp(-_LN2 * z)) / fwhm


def doublet_model(x: np.ndarray, center: np.ndarray, area: np.ndarray, fwhm: np.ndarray, eta: float,
                  ratio: float, ratio_lambda: float) -> np.ndarray:
    """Sum of Kα1 (+ ``ratio`` × Kα2) pseudo-Voigt lines on ``x`` (no background)."""
    x = np.asarray(x, np.float64)
    out = np.zeros_like(x)
    c2 = ka2_position(center, ratio_lambda)
    for c, c_2, a, f in zip(center, c2, area, fwhm):
        out += a * pseudo_voigt(x - c, f, eta)
        if ratio > 0:
            out += ratio * a * pseudo_voigt(x - c_2, f, eta)
    return out


def _pv_and_grads(x: np.ndarray, f: np.ndarray, eta: np.ndarray):
    """pV and its derivatives with respect to the centre (= −d/dx), the FWHM and η.

    float32 (twice the numpy throughput; 10⁻⁷ relative is far below any counting noise): the
    caller forms the offsets ``x`` in float64 first, so positions keep their precision.
    """
    x = x.astype(np.float32)
    f = np.asarray(f, np.float32)
    eta = np.asarray(eta, np.float32)
    inv_f = 1.0 / f
    u = 2.0 * x * inv_f
    z = u * u
    inv = 1.0 / (1.0 + z)
    lor = (_L0 * inv_f) * inv
    gau = np.exp(np.float32(-_LN2) * z) * (_G0 * inv_f)
    v = eta * lor + (1.0 - eta) * gau
    # dv/dz, with dz/dc = −4u/f and dz/df = −2z/f
    dv_dz = -(eta * lor * inv + ((1.0 - eta) * _LN2) * gau)
    d_c = dv_dz * (-4.0 * u * inv_f)
    d_f = -(2.0 * z * dv_dz + v) * inv_f
    return v, d_c, d_f, lor - gau


@dataclass
class WindowFit:
    """Result of :func:`fit_windows` for W windows of up to K lines (padding: NaN).

    Attributes:
        center, area, fwhm: (W, K) Kα1 positions [deg], Kα1 areas [intensity·deg], FWHM [deg].
        sigma_center, sigma_area: (W, K) 1σ uncertainties from the covariance.
        sigma_area_alone: (W, K) σ of the area with the other lines held (marginal over the line's
            centre and FWHM and the background level, :data:`SIGNIF_SHARED`): the detection
            significance of a line, which overlap with its neighbours does not dilute.
        eta: (W,) Lorentzian fraction of each window.
        ratio, sigma_ratio: (W,) Kα2/Kα1 ratio (the fixed one and 0 unless fitted).
        chi2_red: (W,) χ² per degree of freedom of the weighted residuals.
    """

    center: np.ndarray
    area: np.ndarray
    fwhm: np.ndarray
    sigma_center: np.ndarray
    sigma_area: np.ndarray
    sigma_area_alone: np.ndarray
    eta: np.ndarray
    ratio: np.ndarray
    sigma_ratio: np.ndarray
    chi2_red: np.ndarray


@dataclass
class Window:
    """One window to fit: data and the starting values of its K lines (see :func:`fit_windows`)."""

    x: np.ndarray
    y: np.ndarray
    sigma: np.ndarray
    center: np.ndarray
    area: np.ndarray
    fwhm: np.ndarray
    fwhm_lo: np.ndarray
    fwhm_hi: np.ndarray
    center_tol: np.ndarray


def _pad(rows: list[np.ndarray], width: int, fill: float) -> np.ndarray:
    out = np.full((len(rows), width), fill)
    for i, r in enumerate(rows):
        out[i, :len(r)] = r
    return out


class _Problem:
    """Padded arrays of W windows and the model / Jacobian of the parameter layout
    [c (K), a (K, scaled), f (K), η, b₀, b₁, (ratio)]."""

    def __init__(self, windows: list[Window], ratio: float, ratio_lambda: float, free_ratio: bool) -> None:
        n = max(len(w.x) for w in windows)
        k = max(len(w.center) for w in windows)
        self.k, self.free, self.rl, self.ratio = k, free_ratio, ratio_lambda, ratio
        self.x = _pad([w.x for w in windows], n, 0.0)
        self.y = _pad([w.y for w in windows], n, 0.0)
        self.wt = _pad([1.0 / w.sigma for w in windows], n, 0.0)  # padding points weigh nothing
        xm = np.array([0.5 * (w.x[0] + w.x[-1]) for w in windows])
        self.xs = self.x - xm[:, None]
        self.line = _pad([np.ones(len(w.center)) for w in windows], k, 0.0) > 0
        ymax = np.array([max(float(np.max(np.abs(w.y))), 1e-300) for w in windows])
        self.ys = ymax
        amax = ymax * np.array([w.x[-1] - w.x[0] for w in windows])
        area0 = _pad([w.area for w in windows], k, 0.0)
        self.ascale = np.maximum(np.abs(area0), 1e-3 * amax[:, None])  # parameters of order 1
        c0 = _pad([w.center for w in windows], k, 0.0)
        f0 = _pad([w.fwhm for w in windows], k, 1.0)
        tol = _pad([w.center_tol for w in windows], k, 0.0)
        flo = _pad([w.fwhm_lo for w in windows], k, 1.0)
        fhi = _pad([w.fwhm_hi for w in windows], k, 1.0)
        nw = len(windows)
        extra = [np.full((nw, 1), ratio)] if free_ratio else []
        self.p0 = np.concatenate([c0, area0 / self.ascale, f0, np.full((nw, 1), 0.5), np.zeros((nw, 2))]
                                 + extra, axis=1)
        big = np.full((nw, 2), np.inf)
        self.lo = np.concatenate([c0 - tol, np.full((nw, k), -0.05), flo, np.zeros((nw, 1)), -big]
                                 + ([np.zeros((nw, 1))] if free_ratio else []), axis=1)
        self.hi = np.concatenate([c0 + tol, np.full((nw, k), np.inf), fhi, np.ones((nw, 1)), big]
                                 + ([np.ones((nw, 1))] if free_ratio else []), axis=1)
        self.p0 = np.clip(self.p0, self.lo, self.hi)
        # padding lines: frozen (no Jacobian column; the solve sees an identity row)
        self.frozen = np.concatenate([~self.line, ~self.line, ~self.line, np.zeros((nw, 3), bool)]
                                     + ([np.zeros((nw, 1), bool)] if free_ratio else []), axis=1)

    def unpack(self, p: np.ndarray, idx: np.ndarray | slice = slice(None)):
        k = self.k
        r = p[:, -1] if self.free else np.full(len(p), self.ratio)
        a = p[:, k:2 * k] * self.ascale[idx] * self.line[idx]
        return p[:, :k], a, p[:, 2 * k:3 * k], p[:, 3 * k], p[:, 3 * k + 1], p[:, 3 * k + 2], r

    def residual_and_jac(self, p: np.ndarray, idx: np.ndarray | slice = slice(None)
                         ) -> tuple[np.ndarray, np.ndarray]:
        """Weighted residuals (w, N) float64 and Jacobian (w, P, N) float32 (parameters first:
        each row is filled contiguously) of the windows ``idx`` at ``p`` (w, P)."""
        k = self.k
        c, a, f, e, b0, b1, r = self.unpack(p, idx)
        x, xs, wt, ys, line = self.x[idx], self.xs[idx], self.wt[idx], self.ys[idx], self.line[idx]
        ee = e[:, None, None]
        v, dc, df, de = _pv_and_grads(x[:, None, :] - c[..., None], f[..., None], ee)
        ac = a[..., None].astype(np.float32)
        if self.free or self.ratio > 0:
            c2 = ka2_position(c, self.rl)
            slope = _ka2_slope(c, self.rl)
            v2, dc2, df2, de2 = _pv_and_grads(x[:, None, :] - c2[..., None], f[..., None], ee)
            rr = r[:, None, None].astype(np.float32)
            dc += rr * dc2 * slope[..., None].astype(np.float32)
            v += rr * v2
            df += rr * df2
            de += rr * de2
        model = np.einsum("wk,wkn->wn", a, v) + ys[:, None] * (b0[:, None] + b1[:, None] * xs)
        w32 = wt.astype(np.float32)[:, None, :]
        jac = np.empty((len(x), self.p0.shape[1], x.shape[1]), np.float32)
        # padding lines have a = 0 and ascale·line = 0: their columns come out 0 (frozen)
        np.multiply(ac * dc, w32, out=jac[:, :k])
        np.multiply(v * (self.ascale[idx] * line)[..., None].astype(np.float32), w32, out=jac[:, k:2 * k])
        np.multiply(ac * df, w32, out=jac[:, 2 * k:3 * k])
        jac[:, 3 * k] = (ac * de).sum(1) * w32[:, 0]
        jac[:, 3 * k + 1] = ys[:, None] * wt
        jac[:, 3 * k + 2] = (ys[:, None] * xs) * wt
        if self.free:
            jac[:, -1] = np.einsum("wk,wkn->wn", a, v2) * wt
        return (model - self.y[idx]) * wt, jac


def _concat(parts: list[WindowFit], inv: np.ndarray) -> WindowFit:
    """One WindowFit from batches, rows reordered by ``inv``; (w, k) fields NaN-padded to one k."""
    out = {}
    for name in WindowFit.__dataclass_fields__:
        vals = [getattr(q, name) for q in parts]
        if vals[0].ndim == 2:
            k = max(v.shape[1] for v in vals)
            vals = [np.pad(v, ((0, 0), (0, k - v.shape[1])), constant_values=np.nan) for v in vals]
        out[name] = np.concatenate(vals)[inv]
    return WindowFit(**out)


def fit_windows(windows: list[Window], *, ratio: float, ratio_lambda: float, free_ratio: bool = False,
                max_iter: int = 40, _split: bool = True) -> WindowFit:
    """Fit each window's lines (Kα1 + ``ratio`` × Kα2 doublets) plus a linear background.

    Args:
        windows: W windows; line starting values and bounds (``fwhm_lo``/``fwhm_hi`` [deg],
            ``center_tol``: how far a centre may move [deg]); ``y`` background-subtracted,
            ``sigma`` its noise.
        ratio: Kα2/Kα1 area ratio (0: single lines); the start value when ``free_ratio``.
        ratio_lambda: λ₂/λ₁ (ignored when ratio is 0 and not free).
        free_ratio: fit the ratio per window too (bounded to [0, 1]); decides whether Kα2 is present.
        max_iter: Levenberg–Marquardt iterations.
    """
    if _split and len(windows) > 4:  # batches of similar lengths: padding would cost as much as data
        order = np.argsort([len(w.x) for w in windows], kind="stable")
        half = len(order) // 2
        parts = [fit_windows([windows[i] for i in o], ratio=ratio, ratio_lambda=ratio_lambda,
                             free_ratio=free_ratio, max_iter=max_iter, _split=False)
                 for o in (order[:half], order[half:])]
        return _concat(parts, np.argsort(order))
    pb = _Problem(windows, ratio, ratio_lambda, free_ratio)
    nw, n_par = pb.p0.shape
    p = pb.p0.copy()
    res, jac = pb.residual_and_jac(p)
    cost = np.sum(res * res, axis=1)
    lam = np.full(nw, 1e-3)
    active = np.ones(nw, bool)
    eye = np.eye(n_par)
    for _ in range(max_iter):
        ia = np.flatnonzero(active)
        ja, ra = jac[ia], res[ia]
        jtj = np.matmul(ja, ja.transpose(0, 2, 1)).astype(np.float64)
        g = np.matmul(ja.astype(np.float64), ra[..., None])[..., 0]
        d = np.maximum(np.diagonal(jtj, axis1=1, axis2=2), 1e-12)
        # parameters on a bound that the gradient pushes outwards stay there for this step
        # (projected Newton): clipping their step would distort the others' and stall the descent
        pin = pb.frozen[ia] | ((p[ia] <= pb.lo[ia]) & (g > 0)) | ((p[ia] >= pb.hi[ia]) & (g < 0))
        keep = ~pin
        jtj = jtj * (keep[:, :, None] & keep[:, None, :])
        g = g * keep
        a = jtj + (lam[ia, None] * d)[:, :, None] * eye + pin[:, :, None] * eye
        try:
            step = -np.linalg.solve(a, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -g / (d * (1.0 + lam[ia, None]))
        trial = np.clip(p[ia] + step, pb.lo[ia], pb.hi[ia])
        res_t, jac_t = pb.residual_and_jac(trial, ia)
        cost_t = np.sum(res_t * res_t, axis=1)
        ok = cost_t < cost[ia]
        gain = np.where(ok, cost[ia] - cost_t, 0.0)
        b = ia[ok]
        p[b], res[b], jac[b], cost[b] = trial[ok], res_t[ok], jac_t[ok], cost_t[ok]
        lam[ia] = np.where(ok, np.maximum(lam[ia] / 3.0, 1e-9), np.minimum(lam[ia] * 4.0, 1e9))
        # converged: a χ² gain below 1e-3 (χ² is in units of the noise) + 1e-4 relative (a misfit
        # window, e.g. with an unresolved extra line, otherwise crawls on), or the damping saturated
        done = (ok & (gain < 1e-3 + 1e-4 * cost[ia])) | (lam[ia] >= 1e9)
        active[ia[done]] = False
        if not active.any():
            break
    dof = np.maximum(pb.wt.astype(bool).sum(1) - (~pb.frozen).sum(1), 1)
    chi2 = cost / dof
    jac = jac.astype(np.float64)
    jtj = np.matmul(jac, jac.transpose(0, 2, 1)) + pb.frozen[:, :, None] * eye
    cov = np.linalg.pinv(jtj) * np.maximum(chi2, 1.0)[:, None, None]
    sd = np.sqrt(np.clip(np.diagonal(cov, axis1=1, axis2=2), 0.0, None))
    c, a, f, e, _, _, r = pb.unpack(p)
    k = pb.k
    # each line's own block (centre, area, FWHM) with the window's background level, other lines
    # held: the significance of a line is then not diluted by its overlap with neighbours, but
    # does account for the background level it could be traded against
    ii = np.arange(k)
    sub = np.stack([ii, k + ii, 2 * k + ii] + [np.full(k, 3 * k + j) for j in SIGNIF_SHARED], axis=1)
    blk = jtj[:, sub[:, :, None], sub[:, None, :]]  # (W, K, m, m)
    m = sub.shape[1]
    blk = blk + 1e-12 * np.eye(m) * np.maximum(np.abs(blk).max(axis=(2, 3), keepdims=True), 1e-300)
    var_a = np.linalg.pinv(blk)[:, :, 1, 1]
    s_alone = np.sqrt(np.maximum(chi2, 1.0)[:, None] * np.clip(var_a, 0.0, None)) * pb.ascale
    nan = np.where(pb.line, 1.0, np.nan)
    return WindowFit(c * nan, a * nan, f * nan, sd[:, :k] * nan, sd[:, k:2 * k] * pb.ascale * nan,
                     s_alone * nan, e, r, sd[:, -1] if free_ratio else np.zeros(nw), chi2)
