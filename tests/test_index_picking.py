"""Peak picking (indexing.picking): synthetic numpy patterns with known lines, Kα2, noise and
background; every bad-input error path. The lab-rendering check is marked slow."""

from __future__ import annotations

import math

import numpy as np
import pytest

from indexing.peaks import IndexingInputError
from indexing.picking import KA2_OF_KA1, despike, ka2_wavelength_of, pick_peaks, strip_ka2
from indexing.profile import Window, fit_windows

CU1, CU2 = 1.5406, 1.54439
LINES = np.array([18.31, 27.95, 33.12, 41.77, 47.40, 55.83, 62.21, 71.05])
AREAS = np.array([100.0, 45.0, 70.0, 30.0, 55.0, 25.0, 40.0, 20.0])


def _pv(x, c, fwhm, eta):
    """Unit-area pseudo-Voigt, written here independently of indexing.profile."""
    z = (2.0 * (x - c) / fwhm) ** 2
    g = 2.0 * math.sqrt(math.log(2) / math.pi) / fwhm * np.exp(-math.log(2) * z)
    lo = 2.0 / (math.pi * fwhm) / (1.0 + z)
    return eta * lo + (1 - eta) * g


def _ka2(tt):
    return np.degrees(2 * np.arcsin(np.sin(np.radians(tt) / 2) * CU2 / CU1))


def pattern(lines=LINES, areas=AREAS, ratio=0.5, max_counts=2e4, hump=True, air=True, seed=0,
            fwhm=None, eta=0.4, lo=10.0, hi=80.0, step=0.01, x=None):
    """Counts on a grid: doublets of known ratio, Caglioti-like widths, background with an
    amorphous hump and a low-angle air-scatter rise, Poisson noise."""
    x = np.arange(lo, hi, step) if x is None else x
    y = np.zeros_like(x)
    for c, a in zip(lines, areas):
        f = fwhm if fwhm is not None else 0.06 + 0.05 * math.tan(math.radians(c / 2))
        y += a * _pv(x, c, f, eta)
        if ratio > 0:
            y += ratio * a * _pv(x, _ka2(c), f, eta)
    y *= max_counts / y.max()
    bg = 0.02 * max_counts * (1 + 0.3 * (x - lo) / (hi - lo))
    if hump:
        bg += 0.06 * max_counts * np.exp(-0.5 * ((x - 22.0) / 4.0) ** 2)
    if air:
        bg += 0.15 * max_counts * np.exp(-(x - lo) / 4.0)
    counts = np.random.default_rng(seed).poisson(y + bg).astype(float)
    return x, counts


def _paired(picked, true, tol):
    return np.array([np.min(np.abs(picked - t)) <= tol if len(picked) else False for t in true])


@pytest.mark.parametrize("seed", [0, 1])
def test_doublets_give_one_line_each_at_the_ka1_position(seed):
    x, y = pattern(seed=seed)
    pl = pick_peaks(x, y, CU1, source="synthetic.xy")
    assert len(pl) == len(LINES), pl.two_theta
    assert np.max(np.abs(pl.two_theta - LINES)) < 0.01
    assert abs(pl.info["ka2_ratio"] - 0.5) < 0.1 and pl.info["ka2_source"] == "auto"
    assert np.all(np.diff(pl.two_theta) > 0) and np.all(pl.sigma_two_theta > 0)
    # intensities are Kα1 areas: proportional to the true areas
    rel = pl.intensity / pl.intensity[0]
    assert np.allclose(rel, AREAS / AREAS[0], rtol=0.1)


@pytest.mark.parametrize("ratio", [0.45, 0.55])
def test_ka2_ratio_estimated(ratio):
    x, y = pattern(ratio=ratio, max_counts=5e4, seed=3)
    pl = pick_peaks(x, y, CU1)
    assert abs(pl.info["ka2_ratio"] - ratio) < 0.1
    assert np.max(np.abs(pl.two_theta - LINES)) < 0.01


def test_no_ka2_pattern_keeps_every_line():
    # a weak line exactly where the Kα2 of the 47.40° line would be: stripping it would lose it
    lines = np.r_[LINES, _ka2(47.40)]
    areas = np.r_[AREAS, 0.5 * 55.0]
    order = np.argsort(lines)
    x, y = pattern(lines=lines[order], areas=areas[order], ratio=0.0)
    pl = pick_peaks(x, y, CU1)
    assert pl.info["ka2_ratio"] == 0.0
    assert _paired(pl.two_theta, lines, 0.01).all(), pl.two_theta
    assert len(pl) == len(lines)


def test_forced_ratio_zero_and_unknown_anode():
    x, y = pattern(ratio=0.0)
    pl = pick_peaks(x, y, CU1, ka2_ratio=0)
    assert pl.info["ka2_ratio"] == 0.0 and len(pl) == len(LINES)
    # a synchrotron wavelength has no Kα2 to look up: no doublet is fitted
    syn = pick_peaks(x, y, 1.0)
    assert syn.info["ka2_source"] == "none" and syn.info["wavelength_ka2"] is None
    assert np.max(np.abs(syn.two_theta - LINES)) < 0.01


def test_fixed_ratio_and_explicit_ka2_wavelength():
    x, y = pattern(ratio=0.5)
    pl = pick_peaks(x, y, CU1, wavelength_ka2=CU2, ka2_ratio=0.5)
    assert pl.info["ka2_source"] == "fixed" and pl.info["ka2_ratio"] == 0.5
    assert np.max(np.abs(pl.two_theta - LINES)) < 0.01


def test_overlapping_lines_are_fitted_together():
    lines = np.array([30.00, 30.12, 45.00])
    x, y = pattern(lines=lines, areas=np.array([100.0, 60.0, 50.0]), ratio=0.0, fwhm=0.07, hump=False)
    pl = pick_peaks(x, y, CU1, ka2_ratio=0)
    assert len(pl) == 3 and np.max(np.abs(pl.two_theta - lines)) < 0.01


def test_rescaled_pattern_same_lines():
    """Intensities scaled to max 1 (not counts): the noise law adapts, the lines stay."""
    x, y = pattern(seed=5)
    a = pick_peaks(x, y, CU1)
    b = pick_peaks(x, y / y.max(), CU1)
    assert b.info["counts_like"] is False and a.info["counts_like"] is True
    assert len(a) == len(b) and np.max(np.abs(a.two_theta - b.two_theta)) < 0.002


def test_weak_noisy_pattern_has_few_spurious_lines():
    x, y = pattern(max_counts=300, seed=7)
    pl = pick_peaks(x, y, CU1)
    spurious = ~_paired(LINES, pl.two_theta, 0.05)  # picked lines with no true line near
    assert spurious.sum() <= 1, pl.two_theta
    assert _paired(pl.two_theta, LINES[AREAS >= 40], 0.03).all()


def test_background_and_noise_only_give_no_lines():
    x = np.arange(10.0, 80.0, 0.01)
    bg = 200 * (1 + np.exp(-(x - 10) / 4)) + 150 * np.exp(-0.5 * ((x - 22) / 4) ** 2)
    pl = pick_peaks(x, np.random.default_rng(2).poisson(bg).astype(float), CU1)
    assert len(pl) <= 1


def test_nonuniform_axis_is_resampled():
    x = np.arange(10.0, 80.0, 0.01)
    x, y = pattern(seed=4, x=x + np.random.default_rng(0).uniform(-0.002, 0.002, len(x)))
    pl = pick_peaks(x, y, CU1)
    assert pl.info["resampled"] is True
    assert np.max(np.abs(pl.two_theta - LINES)) < 0.01


@pytest.mark.parametrize("case", ["coarse step", "background subtracted", "counts per second", "spike"])
def test_lab_data_variants(case):
    kw = {"step": 0.04, "fwhm": 0.15} if case == "coarse step" else {}
    x, y = pattern(seed=6, **kw)
    if case == "background subtracted":
        y = y - np.median(y)
    elif case == "counts per second":
        y = y / 3600.0
    elif case == "spike":  # a cosmic ray on one point
        y[np.searchsorted(x, 37.0)] += 20 * y.max()
    pl = pick_peaks(x, y, CU1)
    assert len(pl) == len(LINES) and np.max(np.abs(pl.two_theta - LINES)) < 0.01
    assert pl.info["n_spikes"] == (1 if case == "spike" else 0)


def test_despike_keeps_narrow_lines():
    x = np.arange(0.0, 10.0, 0.05)
    y = 10.0 + 1000.0 * _pv(x, 5.0, 0.1, 0.0)  # FWHM of 2 points: a line, not a spike
    y[50] += 5000.0
    out, n = despike(y, np.full_like(y, 3.0))
    assert n == 1 and out[50] < 20.0 and out[100] == y[100]


def test_short_scan_without_lines():
    x, y = pattern(lo=40.0, hi=41.0)  # 100 points of background
    assert len(pick_peaks(x, y, CU1)) == 0


def test_strip_ka2_removes_the_doublet_part():
    x = np.arange(40.0, 60.0, 0.01)
    y = _pv(x, 50.0, 0.1, 0.3) + 0.5 * _pv(x, _ka2(50.0), 0.1, 0.3)
    s = strip_ka2(x, y, 0.5, CU2 / CU1)
    assert abs(np.sum(s) * 0.01 - 1.0) < 0.01
    assert abs(x[np.argmax(s)] - 50.0) < 0.011


def test_fit_windows_recovers_a_noise_free_doublet():
    x = np.arange(49.0, 51.5, 0.01)
    y = 300.0 * (_pv(x, 50.0, 0.12, 0.3) + 0.5 * _pv(x, _ka2(50.0), 0.12, 0.3)) + 5.0
    w = Window(x, y, np.ones_like(x), np.array([50.03]), np.array([250.0]), np.array([0.1]),
               np.array([0.04]), np.array([0.3]), np.array([0.1]))
    fit = fit_windows([w], ratio=0.4, ratio_lambda=CU2 / CU1, free_ratio=True, max_iter=200)
    assert abs(fit.center[0, 0] - 50.0) < 1e-4 and abs(fit.ratio[0] - 0.5) < 1e-3
    assert abs(fit.area[0, 0] - 300.0) < 0.5 and abs(fit.fwhm[0, 0] - 0.12) < 1e-3


def test_ka2_lookup_table():
    assert ka2_wavelength_of(1.5406) == CU2 and ka2_wavelength_of(1.540598) == CU2
    assert ka2_wavelength_of(0.7093) == 0.71359 and ka2_wavelength_of(1.78897) == 1.79285
    assert ka2_wavelength_of(1.0) is None
    assert all(v > k for k, v in KA2_OF_KA1.items())


_X = np.linspace(10, 80, 200)
_Y = 10 + 100 * np.exp(-0.5 * ((_X - 40) / 0.3) ** 2)


@pytest.mark.parametrize("args,kwargs,needle", [
    ((_X, _Y[:-1], CU1), {}, "equal length"),
    ((np.c_[_X, _X], np.c_[_Y, _Y], CU1), {}, "1-D"),
    ((_X[:20], _Y[:20], CU1), {}, "at least 50"),
    ((_X, np.where(_X > 50, np.nan, _Y), CU1), {}, "NaN"),
    ((_X, np.where(_X > 50, np.inf, _Y), CU1), {}, "infinite"),
    ((_X[::-1], _Y, CU1), {}, "non-monotonic 2θ axis in scan.xy"),
    ((np.r_[_X[:100], _X[99:-1]], _Y, CU1), {}, "sort it"),
    ((_X, np.zeros_like(_Y), CU1), {}, "zero or negative"),
    ((_X, -_Y, CU1), {}, "zero or negative"),
    ((_X, np.full_like(_Y, 7.0), CU1), {}, "constant"),
    ((_X, _Y, -1.0), {}, "wavelength"),
    ((_X, _Y, float("nan")), {}, "wavelength"),
    ((_X * 3, _Y, CU1), {}, "0–180"),
    ((_X, _Y, CU1), {"ka2_ratio": "yes"}, "ka2_ratio"),
    ((_X, _Y, CU1), {"ka2_ratio": 1.5}, "ka2_ratio"),
    ((_X, _Y, CU1), {"wavelength_ka2": 1.0}, "wavelength_ka2"),
    ((["a"] * 60, _Y[:60], CU1), {}, "numeric"),
])
def test_bad_input_names_source_and_fix(args, kwargs, needle):
    with pytest.raises(IndexingInputError) as err:
        pick_peaks(*args, source="scan.xy", **kwargs)
    msg = str(err.value)
    assert "scan.xy" in msg and needle in msg
    assert "Fix" in msg or "sort it" in msg


@pytest.mark.slow
def test_lab_renderings_recall_and_spurious(tmp_path):
    """A few test-split patterns rendered as the lab_* metrics see them (the benchmark's code)."""
    pytest.importorskip("torch")
    from benchmarks.index_renderings import DEFAULT_DATA, build_renderings
    from benchmarks.picking_eval import evaluate, summarize

    if not (DEFAULT_DATA / "peaks_test.npz").is_file():
        pytest.skip("default data set not present")
    path = build_renderings(DEFAULT_DATA, "test", out=tmp_path / "r.npz")
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    rows = np.arange(0, 900, 45)
    s = summarize(evaluate(d, rows, "lab", "snip", 0.05, False, 4.0))
    assert s["rec3"] >= 0.85 and s["spur"] <= 0.1 and s["dtt_med"] <= 0.01
    c = summarize(evaluate(d, rows, "clean", "snip", 0.05, False, 4.0))
    assert c["rec3"] >= 0.95 and c["spur"] <= 0.05
