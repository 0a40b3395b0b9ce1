"""Peak picking: the lines of a powder pattern on a grid (measured or rendered) as a PeakList.

Steps of :func:`pick_peaks` (choices measured with ``python -m benchmarks.picking_eval``):

1. Input checks (1-D, equal lengths, ≥ 50 points, finite, strictly increasing 2θ, some signal).
   A non-uniform axis is resampled linearly onto its median step (the filters count points).
2. Noise σ² = a + b·ℓ and the background (SNIP on LLS-compressed counts): ``indexing.background``.
3. Candidates: maxima of the negative second derivative of the Gaussian-smoothed residual (the
   Mexican-hat filter of scale-space peak detection, T. Lindeberg, Int. J. Comput. Vis. 30, 79
   (1998)) ≥ 2.5 σ of its noise with a smoothed height ≥ 2.5 σ (``scipy.signal.find_peaks``,
   height and prominence), at two filter widths: 0.6 × the lines' σ splits shoulders, 1.2 × is
   near the matched filter of a weak line (during development, on 60 lab renderings, the pair
   raised the recall of lines ≥ 3 % from 0.91 with one Savitzky–Golay second derivative of window
   FWHM to 0.94, mostly at < 2·10³ counts). The fit decides.
4. Kα2 (Kα1 of a known anode, or ``wavelength_ka2`` given): with ``ka2_ratio="auto"`` the
   strongest isolated lines are fitted as doublets at the Bragg separation with a free ratio; fits
   whose doublet is split by ≥ 0.6 FWHM decide (weighted median; < 0.15: no Kα2). When no doublet
   is split that well (broad lines, low angles) the ratio cannot be told from a broader single
   line and the physical 0.5 is kept (``info["ka2_source"] == "default"``): a wrong doublet there
   moves a line by a fraction of the unresolved splitting, it never removes one. Candidates are
   then searched again on the Rachinger-stripped residual (W. A. Rachinger, J. Sci. Instrum. 25,
   254 (1948); solved as the fixed point s = y − r·s(2θ₁(2θ)), which converges as rᵏ), so Kα2
   bumps are not taken for lines; the positions come from the doublet fit, not the stripping.
5. Every candidate is fitted as a pseudo-Voigt doublet of that ratio (``indexing.profile``, one
   batched Levenberg–Marquardt for all windows), overlapping neighbours together, with a FWHM
   bounded around the pattern's width law FWHM(2θ) = p₀ + p₁ tan θ fitted to the strongest
   lines. A line is kept when its area is ≥ ``min_snr`` σ (σ with the neighbours held).

Positions keep the zero shift (the cell refinement fits it); intensities are Kα1 areas (the
integrated intensity of the reflection for that wavelength, like the simulator's sticks); σ_2θ is
the fit's (covariance × max(1, χ²_red)), at least 10⁻⁴°.
"""

from __future__ import annotations

import time

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import find_peaks, savgol_filter

from indexing.background import noise_model, noise_sigma, pattern_background
from indexing.peaks import IndexingInputError, PeakList
from indexing.profile import Window, fit_windows, ka2_position
from utils.lattice import KA2_OF_KA1, ka2_wavelength_of  # noqa: F401  (KA2_OF_KA1 re-exported)

RATIO_MIN = 0.15  # an estimated Kα2/Kα1 ratio below this means "no Kα2" (the physical one is ≈ 0.5)
RATIO_SIGMA_MAX = 0.1  # a less precise estimate decides nothing: the default 0.5 is kept
CANDIDATE_Z = 2.5  # candidates: z-scores of the smoothed second derivative and height (the fit decides)
CANDIDATE_SCALES = (0.6, 1.2)  # σ of the candidate filters / σ of the typical line
MAX_LINES_PER_FIT = 6  # larger clusters are fitted in chunks with guard lines on each side


def _validate(two_theta, counts, wavelength: float, source: str
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Checked float64 (x, y) on a uniform grid, and the measured y when it had to be resampled."""
    try:
        x = np.asarray(two_theta, np.float64)
        y = np.asarray(counts, np.float64)
    except (TypeError, ValueError) as exc:
        raise IndexingInputError(f"{source}: 2θ and counts must be numeric arrays ({exc}). "
                                 "Fix: pass two columns of numbers") from exc
    if x.ndim != 1 or y.ndim != 1 or x.shape != y.shape:
        raise IndexingInputError(f"{source}: 2θ {x.shape} and counts {y.shape} must be 1-D of equal length. "
                                 "Fix: pass one count per 2θ point")
    if x.size < 50:
        raise IndexingInputError(f"{source}: only {x.size} points; peak picking needs at least 50. "
                                 "Fix: pass the whole scan, or give a peak list instead")
    if not (np.isfinite(wavelength) and wavelength > 0):
        raise IndexingInputError(f"{source}: wavelength {wavelength} is not a positive number. "
                                 "Fix: give the Kα1 wavelength in Å (Cu: 1.5406)")
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise IndexingInputError(f"{source}: {int(bad.sum())} NaN or infinite values (first at point {i}). "
                                 "Fix: remove or repair those points")
    if np.any(np.diff(x) <= 0):
        i = int(np.flatnonzero(np.diff(x) <= 0)[0])
        raise IndexingInputError(f"non-monotonic 2θ axis in {source} (point {i + 1}: {x[i + 1]:g} after "
                                 f"{x[i]:g}): sort it (and merge repeated angles)")
    if x[0] <= 0 or x[-1] >= 180:
        raise IndexingInputError(f"{source}: 2θ runs from {x[0]:g} to {x[-1]:g}°, outside 0–180°. "
                                 "Fix: give 2θ in degrees")
    if np.max(y) <= 0:
        raise IndexingInputError(f"{source}: all counts are zero or negative. "
                                 "Fix: pass the measured intensities (not an empty or "
                                 "background-subtracted scan)")
    if np.ptp(y) <= 1e-12 * np.max(np.abs(y)):
        raise IndexingInputError(f"{source}: the pattern is constant ({y[0]:g}), there are no peaks. "
                                 "Fix: check that the right column was read as intensity")
    step = np.diff(x)
    med = float(np.median(step))
    if np.max(np.abs(step - med)) > 0.01 * med:  # filters count points: put them on a uniform grid
        xu = x[0] + med * np.arange(int(np.floor((x[-1] - x[0]) / med)) + 1)
        return xu, np.interp(xu, x, y), y
    return x, y, None


def strip_ka2(x: np.ndarray, y: np.ndarray, ratio: float, ratio_lambda: float,
              n_iter: int = 30) -> np.ndarray:
    """Rachinger stripping: the Kα1 part s of ``y`` = s + ratio·s(2θ₁(2θ)) (fixed-point iteration)."""
    s1 = np.clip(np.sin(np.radians(x) / 2.0) / ratio_lambda, 0.0, 1.0)
    x1 = np.degrees(2.0 * np.arcsin(s1))  # the Kα1 angle whose Kα2 lands on x
    s = y.copy()
    for _ in range(n_iter):
        s = y - ratio * np.interp(x1, x, s, left=0.0)
    return s


def _odd(n: float, lo: int = 5) -> int:
    n = max(int(round(n)), lo)
    return n if n % 2 else n + 1


def _filter_norm(width: float, order: int) -> float:
    """‖k‖₂ of the Gaussian (derivative) filter of σ = ``width`` points: the gain of white noise."""
    n = int(4 * width) + 2
    imp = np.zeros(2 * n + 1)
    imp[n] = 1.0
    return float(np.linalg.norm(gaussian_filter1d(imp, width, order=order)))


def _candidates(resid: np.ndarray, sigma: np.ndarray, width_pts: float, thresh: float) -> np.ndarray:
    """Indices of line candidates: peaks of the negative second derivative of the Gaussian-smoothed
    residual (a Mexican-hat filter: blind to a linear background) ≥ ``thresh`` σ of its noise,
    where the smoothed residual is ≥ ``thresh`` σ of its own noise. Two filter widths
    (:data:`CANDIDATE_SCALES` × the lines' σ): the narrow one splits shoulders, the wide one is
    nearer the matched filter of a weak line in noise; a wide-filter candidate within half a FWHM
    of a narrow-filter one is the same line."""
    found = []
    for scale in CANDIDATE_SCALES:
        s = max(scale * width_pts / 2.3548, 0.8)
        d2 = -gaussian_filter1d(resid, s, order=2, mode="nearest")
        sm = gaussian_filter1d(resid, s, mode="nearest")
        z2 = d2 / (sigma * _filter_norm(s, 2))
        zs = sm / (sigma * _filter_norm(s, 0))
        idx, _ = find_peaks(z2, height=thresh, prominence=thresh, distance=max(int(s // 2), 1))
        idx = idx[zs[idx] >= thresh]
        if found and len(found[0]) and len(idx):
            near = np.searchsorted(found[0], idx)
            lo = np.abs(idx - found[0][np.clip(near - 1, 0, None)])
            hi = np.abs(idx - found[0][np.clip(near, None, len(found[0]) - 1)])
            idx = idx[np.minimum(lo, hi) > 0.5 * width_pts]
        found.append(idx)
    return np.unique(np.concatenate(found))


def despike(y: np.ndarray, sigma: np.ndarray, k: float = 6.0) -> tuple[np.ndarray, int]:
    """Replace one-point spikes (cosmic rays, detector glitches) by the mean of their neighbours.

    A spike stands ≥ ``k`` σ above both neighbours, and that step is ≥ 60 % of its height above
    the lower of the points two away; the top of a real line of FWHM ≥ 2 points stays below 53 %.
    """
    inner = y[1:-1]
    step = inner - np.maximum(y[:-2], y[2:])
    i = np.arange(1, len(y) - 1)
    base = np.minimum(y[np.maximum(i - 2, 0)], y[np.minimum(i + 2, len(y) - 1)])
    spike = (step > k * sigma[1:-1]) & (step > 0.6 * (inner - base))
    out = y.copy()
    i = np.flatnonzero(spike) + 1
    out[i] = 0.5 * (y[i - 1] + y[i + 1])
    return out, int(len(i))


def _window(x, resid, sigma, centers, heights, fwhm, ratio, rl, with_ka2) -> Window | None:
    """The window covering lines at ``centers`` [deg] (and their Kα2 when ``with_ka2``)."""
    step = x[1] - x[0]
    c2 = ka2_position(centers, rl) if rl else centers
    lo, hi = np.min(centers - 2.5 * fwhm), np.max((c2 if with_ka2 else centers) + 2.5 * fwhm)
    i0, i1 = max(int(np.searchsorted(x, lo)), 0), min(int(np.searchsorted(x, hi)) + 1, len(x))
    if i1 - i0 < 3 * len(centers) + 6:
        return None
    overlap = 1.0 + ratio * np.exp(-2.77 * ((c2 - centers) / fwhm) ** 2)  # unresolved Kα2 adds height
    area0 = np.maximum(heights, 0.0) * fwhm * 1.25 / overlap
    return Window(x[i0:i1], resid[i0:i1], sigma[i0:i1], centers, area0, fwhm, 0.4 * fwhm, 2.5 * fwhm,
                  np.maximum(0.6 * fwhm, 3 * step))


def _calibrate(x, resid, sigma, cand, heights, f0, rl, ka2_ratio):
    """Kα2 ratio (auto or given) and the FWHM law p₀ + p₁ tan θ from strong isolated lines.

    Returns:
        (ratio, σ_ratio, how the ratio was set, (p₀, p₁)).
    """
    step = x[1] - x[0]
    auto = ka2_ratio == "auto" and rl is not None
    ratio = 0.0 if rl is None else (0.5 if auto else float(ka2_ratio))
    pos = x[cand]
    c2 = ka2_position(pos, rl) if rl else pos
    resolved, unresolved = [], []
    for i in np.argsort(-heights)[:40]:
        near = (pos > pos[i] - 3 * f0) & (pos < c2[i] + 3 * f0) & (heights > 0.05 * heights[i])
        near[i] = False
        near &= np.abs(pos - c2[i]) > max(0.5 * f0, 3 * step)  # its own Kα2 bump is not a neighbour
        if not near.any():
            (resolved if rl and c2[i] - pos[i] >= 0.4 * f0 else unresolved).append(i)
    one = np.array([f0])
    how, s_ratio, centers, widths = ("fixed" if rl is not None else "none"), 0.0, [], []
    if auto:
        wins = [w for i in resolved[:8] if (w := _window(x, resid, sigma, pos[i:i + 1], heights[i:i + 1],
                                                            one, 0.5, rl, True)) is not None]
        r = s = np.zeros(0)
        if wins:
            fit = fit_windows(wins, ratio=0.5, ratio_lambda=rl, free_ratio=True)
            centers += list(fit.center[:, 0])
            widths += list(fit.fwhm[:, 0])
            # only doublets split by ≥ 0.6 FWHM tell the ratio apart from a broader single line
            split = (ka2_position(fit.center[:, 0], rl) - fit.center[:, 0]) / fit.fwhm[:, 0]
            ok = (fit.sigma_ratio > 0) & (split >= 0.6)
            r, s = fit.ratio[ok], np.maximum(fit.sigma_ratio[ok], 0.01)
        if r.size:
            w = 1.0 / s ** 2
            o = np.argsort(r)
            cw = np.cumsum(w[o])
            est = float(r[o][np.searchsorted(cw, 0.5 * cw[-1])])  # weighted median
            s_ratio = float(1.2533 / np.sqrt(w.sum()))  # σ of a median ≈ √(π/2) σ of the mean
        if r.size and s_ratio <= RATIO_SIGMA_MAX:
            how, ratio = "auto", (est if est >= RATIO_MIN else 0.0)
        else:  # no doublet resolved well enough to measure: the physical Cu/Mo/… value
            how = "default"
    rest = unresolved[:4] + ([] if auto else resolved[:4])
    wins = [w for i in rest if (w := _window(x, resid, sigma, pos[i:i + 1], heights[i:i + 1], one,
                                             ratio, rl, ratio > 0)) is not None]
    if wins:
        fit = fit_windows(wins, ratio=ratio, ratio_lambda=rl or 1.0)
        centers += list(fit.center[:, 0])
        widths += list(fit.fwhm[:, 0])
    return ratio, s_ratio, how, _width_law(np.array(centers), np.array(widths), f0)


def _width_law(centers: np.ndarray, widths: np.ndarray, f0: float) -> tuple[float, float]:
    """FWHM = p₀ + p₁ tan θ through the calibration lines; one refit without the lines > 30 % off
    (an unresolved pair fitted as one broad line); a constant when the angles span too little."""
    ok = np.isfinite(centers) & np.isfinite(widths) & (widths > 0)
    t, f = np.tan(np.radians(centers[ok]) / 2.0), widths[ok]
    if len(f) == 0:
        return f0, 0.0
    if len(f) < 3 or np.ptp(t) < 0.1:
        return float(np.median(f)), 0.0
    p1, p0 = np.polyfit(t, f, 1)
    good = np.abs(f - (p0 + p1 * t)) < 0.3 * f
    if 3 <= good.sum() < len(f) and np.ptp(t[good]) >= 0.1:
        p1, p0 = np.polyfit(t[good], f[good], 1)
    return float(p0), float(p1)


def pick_peaks(two_theta, counts, wavelength: float, *, wavelength_ka2: float | None = None,
               ka2_ratio: float | str = "auto", min_snr: float = 4.0, source: str = "pattern",
               background: str = "snip") -> PeakList:
    """The diffraction lines of a pattern, one line per reflection at its Kα1 position.

    Args:
        two_theta: (n,) strictly increasing 2θ [deg] (n ≥ 50).
        counts: (n,) intensities: detector counts (best: the noise model sees Poisson) or any
            rescaled intensity.
        wavelength: Kα1 (or monochromatic) wavelength [Å].
        wavelength_ka2: Kα2 wavelength [Å]; None looks it up from ``wavelength`` in
            :data:`KA2_OF_KA1` (no doublet when it is not a known anode).
        ka2_ratio: "auto" (estimate per pattern; < 0.15 means none), or a fixed ratio in [0, 1]
            (0: the pattern has no Kα2, e.g. a Johansson Kα1 monochromator).
        min_snr: a line is kept when its fitted area is ≥ ``min_snr`` standard deviations (σ of
            the area with the neighbouring lines held, ``indexing.profile.WindowFit``).
        source: the file name, for messages and ``PeakList.source``.
        background: "snip" (default), "arpls" or "pspline_arpls" (``indexing.background``).

    Returns:
        PeakList sorted by 2θ (zero shift not removed; intensities = Kα1 areas) with ``info``:
        ``ka2_ratio``, ``ka2_ratio_sigma``, ``ka2_source`` (auto / default / fixed / none),
        ``wavelength_ka2``, ``noise_a``/``noise_b`` (σ² = a + b·signal), ``counts_like``,
        ``noise_median`` (median σ), ``fwhm_law`` (p₀, p₁ [deg]), ``n_candidates``,
        ``n_rejected`` (candidates the fit found insignificant), ``n_spikes`` (one-point spikes
        replaced), ``resampled``, ``time_s``.

    Raises:
        IndexingInputError: bad input (the message names ``source`` and the fix).
    """
    t_start = time.perf_counter()
    if isinstance(ka2_ratio, str):
        if ka2_ratio != "auto":
            raise IndexingInputError(f"{source}: ka2_ratio={ka2_ratio!r}. Fix: 'auto' or a number in [0, 1]")
    elif not 0.0 <= float(ka2_ratio) <= 1.0:
        raise IndexingInputError(f"{source}: ka2_ratio={ka2_ratio} outside [0, 1]. "
                                 "Fix: 'auto', 0 (no Kα2) or the Kα2/Kα1 ratio (≈ 0.5)")
    x, y, raw = _validate(two_theta, counts, float(wavelength), source)
    resampled = raw is not None
    lam2 = wavelength_ka2 if wavelength_ka2 is not None else ka2_wavelength_of(float(wavelength))
    if wavelength_ka2 is not None and not (np.isfinite(lam2) and lam2 > wavelength):
        raise IndexingInputError(f"{source}: wavelength_ka2={lam2} must exceed the Kα1 wavelength "
                                 f"{wavelength}. Fix: give Kα2 in Å (Cu: 1.54439) or leave it None")
    step = float(x[1] - x[0])
    noise = noise_model(y if raw is None else raw)
    level = np.clip(savgol_filter(y, 11, 2), 0.0, None)
    y, n_spikes = despike(y, noise_sigma(level, *noise))
    pat = pattern_background(x, y, background, noise=noise)
    a, b, sigma, w_typ = pat.noise_a, pat.noise_b, pat.sigma, pat.fwhm_points
    resid = y - pat.background
    rl = None if lam2 is None or ka2_ratio == 0 else float(lam2) / float(wavelength)
    thresh = min(CANDIDATE_Z, min_snr)
    win = _odd(w_typ)
    cand = _candidates(resid, sigma, w_typ, thresh)
    sm = savgol_filter(resid, win, 2)
    f0 = w_typ * step
    ratio, s_ratio, how, law = _calibrate(x, resid, sigma, cand, sm[cand], f0, rl, ka2_ratio)
    if ratio > 0:
        stripped = strip_ka2(x, resid, ratio, rl)
        cand = _candidates(stripped, sigma * np.sqrt(1.0 + ratio ** 2), w_typ, thresh)
        sm = savgol_filter(stripped, win, 2)
    pos, heights = x[cand], sm[cand]
    fw = np.maximum(law[0] + law[1] * np.tan(np.radians(pos) / 2.0), 0.5 * f0)
    lines = _fit_all(x, resid, sigma, pos, heights, fw, ratio, rl if ratio > 0 else None)
    c, area, s_c, s_a = lines
    keep = np.isfinite(c) & (area > 0) & (area >= min_snr * s_a)
    info = {"ka2_ratio": ratio, "ka2_ratio_sigma": s_ratio, "ka2_source": how, "wavelength_ka2": lam2,
            "noise_a": a, "noise_b": b, "counts_like": pat.counts_like,
            "fwhm_law": law, "n_candidates": int(len(cand)), "n_rejected": int((~keep).sum()),
            "resampled": resampled, "n_spikes": n_spikes, "background": background,
            "noise_median": float(np.median(sigma))}
    info["time_s"] = time.perf_counter() - t_start
    return PeakList(c[keep], area[keep], float(wavelength), np.maximum(s_c[keep], 1e-4), source, info)


def _fit_all(x, resid, sigma, pos, heights, fw, ratio, rl):
    """Fit every candidate: chains of overlapping windows, in chunks of at most
    :data:`MAX_LINES_PER_FIT` lines with one guard line per side (fitted, not reported)."""
    n = len(pos)
    out = [np.full(n, np.nan) for _ in range(4)]
    if n == 0:
        return out
    c2 = ka2_position(pos, rl) if rl else pos
    lo, hi = pos - 2.5 * fw, c2 + 2.5 * fw
    starts = np.r_[0, np.flatnonzero(lo[1:] > np.maximum.accumulate(hi)[:-1]) + 1, n]
    wins, cores = [], []
    for s, e in zip(starts[:-1], starts[1:]):
        for p in range(s, e, MAX_LINES_PER_FIT):
            q = min(p + MAX_LINES_PER_FIT, e)
            g0, g1 = max(s, p - 1), min(e, q + 1)
            w = _window(x, resid, sigma, pos[g0:g1], heights[g0:g1], fw[g0:g1], ratio, rl, ratio > 0)
            if w is not None:
                wins.append(w)
                cores.append((p, q, p - g0))
    if not wins:
        return out
    fit = fit_windows(wins, ratio=ratio, ratio_lambda=rl or 1.0)
    for j, (p, q, off) in enumerate(cores):
        core = slice(off, off + q - p)
        out[0][p:q], out[1][p:q] = fit.center[j, core], fit.area[j, core]
        out[2][p:q], out[3][p:q] = fit.sigma_center[j, core], fit.sigma_area_alone[j, core]
    return out
