"""Render peak lists (sticks: 2θ, integrated intensity) onto the 2θ grid, in torch, on the fly.

Physics (per stick; formulas in ``datasets.rendering.physics``): the 2θ of the peak table is
converted to the grid's wavelength through the d-spacing (Bragg: λ = 2 d sin θ); a Kα2 companion
is added at ``2 asin(sin θ · λ2/λ1)`` with ``ka2_ratio`` of the intensity; zero shift and specimen
displacement move both lines; the width is the Thompson–Cox–Hastings pseudo-Voigt of a Caglioti
Gaussian and a Scherrer + strain Lorentzian (see :class:`datasets.rendering.instrument.RenderConfig`
for the physical meaning and ranges).
Intensities are *integrated* intensities (pymatgen's), so a peak's height is intensity / area and
broad high-angle peaks are lower, as in measured data. Each pattern is scaled to max 1.

Numerics: the naive sum evaluates every stick on every grid point, B·P·L work (``method="dense"``,
kept as the reference). The fast sum (default) gives the same max-normalised patterns within
10⁻⁴ (measured ≤ 2·10⁻⁵ on realistic batches):

* near field: each stick's pseudo-Voigt times a taper s(x) (1 for |x| ≤ a, C³ smoothstep down to 0
  at |x| = 1.5 a) on its own window of 2·⌈1.5 a⌉ + 1 grid points (gather + ``index_add_``), where
  a ≥ ``tail_factor`` × the largest FWHM of the *same sample*, rounded up on a 2^(1/4) ladder, so
  a pattern never depends on the other samples of its batch;
* far field: what is left, (1 − s)·pV, has a Gaussian part below 10⁻⁶ (dropped) and the Lorentzian
  h²/(x² + h²) = u − u² + u³ − … with u = h²/x² ≤ 1/16; each term is a fixed kernel
  (1 − s(x))·(a/x)^2k, so the tails of all sticks are one FFT convolution per sample (sticks spread
  on 4 grid points with cubic Lagrange weights).

Speed and the measured difference: ``python -m benchmarks.bench_render``. CPU results are bitwise
reproducible; on CUDA ``index_add_`` uses atomics, so sums may differ in the last bits.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from datasets.rendering.instrument import (
    KA2_OF_KA1,
    RenderConfig,
    add_noise,
    background,
    draw_params,
    peak_factors,
)
from datasets.rendering.physics import caglioti_fwhm, lorentzian_fwhm, pseudo_voigt, pv_area, tch
from utils.errors import ConfigError, DataError, fail
from utils.grid import GridSpec

_LN2 = math.log(2.0)


def pad_peaks(two_theta: list[np.ndarray], intensity: list[np.ndarray],
              device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Ragged per-sample sticks → padded (B, P) float32 2θ, intensity and bool mask."""
    b, p = len(two_theta), max([len(t) for t in two_theta], default=0)
    tt = np.zeros((b, p), np.float32)
    it = np.zeros((b, p), np.float32)
    m = np.zeros((b, p), bool)
    for i, (t, v) in enumerate(zip(two_theta, intensity)):
        tt[i, :len(t)], it[i, :len(t)], m[i, :len(t)] = t, v, True
    return (torch.from_numpy(tt).to(device), torch.from_numpy(it).to(device),
            torch.from_numpy(m).to(device))


def _fft_size(m: int) -> int:
    """Smallest 2^a 3^b 5^c ≥ m (fast sizes for pocketfft / cuFFT)."""
    n = m
    while True:
        k = n
        for f in (2, 3, 5):
            while k % f == 0:
                k //= f
        if k == 1:
            return n
        n += 1


def _smoothstep(t: torch.Tensor) -> torch.Tensor:
    """C³ step 0 → 1 on t ∈ [0, 1] (35t⁴ − 84t⁵ + 70t⁶ − 20t⁷): smooth kernels interpolate well."""
    return t ** 4 * (35.0 + t * (-84.0 + t * (70.0 - 20.0 * t)))


# a ≥ 16: a taper of ≥ 8 points keeps the far kernels smooth enough for cubic interpolation.
_LADDER = [int(math.ceil(16 * 2 ** (k / 4))) for k in range(44)]  # 16, 20, 23, 27, 32, 39, ...


class PeakRenderer:
    """Pseudo-Voigt rendering of stick patterns on a fixed grid (CPU or CUDA, whatever it is given).

    Args:
        grid: the 2θ grid (and wavelength) of the output.
        cfg: instrument/sample settings and augmentation ranges (default :class:`RenderConfig`).
        method: ``"fast"`` (windowed near field + FFT Lorentzian tails) or ``"dense"`` (reference).
    """

    def __init__(self, grid: GridSpec | None = None, cfg: RenderConfig | None = None,
                 method: str = "fast") -> None:
        self.grid = grid or GridSpec()
        self.cfg = cfg or RenderConfig()
        if method not in ("fast", "dense"):
            raise ConfigError(f"PeakRenderer method {method!r}: expected 'fast' or 'dense'")
        self.method = method
        lam = self.grid.wavelength
        self.ka2 = self.cfg.ka2_wavelength
        if self.ka2 is None:
            self.ka2 = next((v for k, v in KA2_OF_KA1.items() if abs(k - lam) < 2e-3), None)
        self.step = self.grid.step
        self.margin = int(math.ceil(self.cfg.margin_deg / self.step))
        self._kernels: dict[tuple, torch.Tensor] = {}

    def __getstate__(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        d["_kernels"] = {}  # cheap to rebuild; keep worker pickles small
        return d

    # ------------------------------------------------------------------ sticks
    def sticks(self, two_theta: torch.Tensor, intensity: torch.Tensor, mask: torch.Tensor | None,
               augment: bool, seeds: torch.Tensor | None, wavelength: float | None) -> dict[str, Any]:
        """Physical preprocessing shared by both sums: positions, heights, widths of valid sticks.

        Returns:
            dict with per-stick (N,) tensors ``b`` (sample), ``q`` (float64 grid position),
            ``height``/``fwhm``/``eta`` (float32, grid-point units), per-sample ``hmax`` (B,)
            and ``params`` (per-sample settings).
        """
        cfg, g = self.cfg, self.grid
        dev = two_theta.device
        tt = two_theta.double()
        inten = intensity.to(dev).double()
        m = torch.ones_like(tt, dtype=torch.bool) if mask is None else mask.to(dev).bool()
        m = m & torch.isfinite(tt) & torch.isfinite(inten) & (inten > 0) & (tt > 0) & (tt < 180)
        tt = torch.where(m, tt, torch.full_like(tt, 90.0))
        bsz = tt.shape[0]
        lam = g.wavelength
        if wavelength is not None and abs(float(wavelength) - lam) > 1e-6:
            s = torch.sin(torch.deg2rad(tt / 2)) * (lam / float(wavelength))  # same d, new λ
            m = m & (s < 1.0)
            tt = 2.0 * torch.rad2deg(torch.asin(s.clamp(max=1.0)))
        peak = torch.where(m, inten, torch.zeros_like(inten)).amax(dim=1, keepdim=True)
        rel = torch.where(m, inten / peak.clamp_min(1e-30), torch.zeros_like(inten))
        params = draw_params(cfg, seeds if augment else None, bsz, dev)
        if augment:
            factor, keep = peak_factors(cfg, seeds, rel, params)
            rel, m = rel * factor, m & keep
        if self.ka2 is not None:
            s2 = torch.sin(torch.deg2rad(tt / 2)) * (self.ka2 / lam)
            m2 = m & (s2 < 1.0) & (params["has_ka2"][:, None] > 0) & (params["ka2_ratio"][:, None] > 0)
            tt = torch.cat([tt, 2.0 * torch.rad2deg(torch.asin(s2.clamp(max=1.0)))], 1)
            rel = torch.cat([rel, rel * params["ka2_ratio"][:, None]], 1)
            m = torch.cat([m, m2], 1)
        p = {k: v[:, None] for k, v in params.items()}
        theta = torch.deg2rad(tt / 2)
        tt = tt + p["zero_shift_deg"] - torch.rad2deg(2.0 * p["displacement_mm"] * torch.cos(theta)
                                                      / cfg.goniometer_radius_mm)
        theta = torch.deg2rad(tt.clamp(1e-3, 179.0) / 2)
        tan, cos = torch.tan(theta), torch.cos(theta)
        hg = caglioti_fwhm(tan, p["caglioti_u"], p["caglioti_v"], p["caglioti_w"])
        hl = lorentzian_fwhm(tan, cos, p["crystallite_nm"] * 10.0, p["microstrain"], lam, cfg.scherrer_k)
        fwhm, eta = tch(hg, hl)
        fwhm = fwhm / self.step
        q = (tt - g.two_theta_min) / self.step
        m = m & (q >= -self.margin) & (q <= g.n_points - 1 + self.margin)
        height = rel / pv_area(fwhm, eta)
        b, j = m.nonzero(as_tuple=True)
        hmax = torch.where(m, fwhm, torch.zeros_like(fwhm)).amax(dim=1)
        return {"b": b, "q": q[b, j], "height": height[b, j].float(), "fwhm": fwhm[b, j].float(),
                "eta": eta[b, j].float(), "hmax": hmax, "params": params, "batch": bsz}

    # ------------------------------------------------------------------ sums
    def _sum_dense(self, st: dict[str, Any], chunk: int = 256) -> torch.Tensor:
        """Reference: every stick on every grid point, (B, L) float32."""
        n_pts, dev = self.grid.n_points, st["q"].device
        out = torch.zeros(st["batch"], n_pts, dtype=torch.float32, device=dev)
        j = torch.arange(n_pts, device=dev)
        i0 = torch.round(st["q"]).long()
        frac = (st["q"] - i0).float()
        for s in range(0, len(i0), chunk):  # chunks bound the (chunk, L) temporaries
            sl = slice(s, s + chunk)
            x = (j[None, :] - i0[sl, None]).float() - frac[sl, None]
            v = pseudo_voigt(x, st["fwhm"][sl, None], st["eta"][sl, None]) * st["height"][sl, None]
            out.index_add_(0, st["b"][sl], v)
        return out

    def _sum_fast(self, st: dict[str, Any]) -> torch.Tensor:
        """Windowed near field + FFT far field of the Lorentzian tails, (B, L) float32."""
        bsz, n_pts, dev = st["batch"], self.grid.n_points, st["q"].device
        need = (self.cfg.tail_factor * st["hmax"]).cpu().numpy()
        level = np.searchsorted(_LADDER, need)  # per sample: smallest ladder a ≥ need
        if level.max(initial=0) >= len(_LADDER):
            raise ConfigError(f"peak FWHM of {st['hmax'].max().item():.0f} grid points is too broad "
                              "for the fast renderer. Fix: use narrower widths or method='dense'")
        a_s = torch.as_tensor(np.asarray(_LADDER)[level], device=dev)  # (B,)
        w_max = self._half(int(a_s.max().item())) if bsz else 0
        pad = self.margin + w_max
        lx = n_pts + 2 * pad
        near = torch.zeros(bsz * lx, dtype=torch.float32, device=dev)
        i0 = torch.round(st["q"]).long()
        frac = (st["q"] - i0).float()
        a_n = a_s[st["b"]]
        for a in torch.unique(a_n).tolist() if len(i0) else []:
            sel = (a_n == a).nonzero(as_tuple=True)[0]
            half = self._half(a)
            d = torch.arange(-half, half + 1, device=dev)
            x = d[None, :].float() - frac[sel, None]
            eta = st["eta"][sel, None]
            z = x.mul(x).mul_((4.0 / st["fwhm"][sel] ** 2)[:, None])
            v = z.add(1.0).reciprocal_().mul_(eta)  # η·Lorentzian everywhere in the window
            # The Gaussian is < 1e-7 beyond 1.2·a ≥ 2.4 FWHM: exp only on the central columns.
            core = slice(half - min(half, (6 * a + 4) // 5), half + min(half, (6 * a + 4) // 5) + 1)
            v[:, core].add_(z[:, core].mul_(-_LN2).exp_().mul_(1.0 - eta))
            v.mul_(st["height"][sel, None])
            edge = d.abs() >= a - 1  # the only columns where the taper can be below 1
            v[:, edge] *= self._taper(x[:, edge].abs(), a)
            idx = (st["b"][sel] * lx + i0[sel] + pad)[:, None] + d[None, :]
            near.index_add_(0, idx.reshape(-1), v.reshape(-1))
        y = near.view(bsz, lx)[:, pad:pad + n_pts]
        return y + self._far_field(st, a_s)

    TAPER = 0.5  # taper length / a
    N_TERMS = 3  # terms of the far-field series u − u² + u³

    def _half(self, a: int) -> int:
        """Half-width of the near window of ladder level ``a`` (where the taper reaches 0)."""
        return int(math.ceil(a * (1.0 + self.TAPER)))

    def _taper(self, r: torch.Tensor, a: int) -> torch.Tensor:
        """1 for r ≤ a, smoothly down to 0 at r = (1 + TAPER)·a."""
        t = ((r - a) / (self.TAPER * a)).clamp(0.0, 1.0)
        return 1.0 - _smoothstep(t)

    def _kernel_spectrum(self, a: int, n: int, dev: torch.device) -> torch.Tensor:
        """rfft of the far-field kernels (1 − s(d))·(a/d)^2k, k = 1..N_TERMS: (N_TERMS, n//2+1)."""
        key = (a, n, self.TAPER, str(dev))
        if key not in self._kernels:
            d = torch.arange(n, dtype=torch.float64)
            r = torch.minimum(d, n - d)
            t = ((r - a) / (self.TAPER * a)).clamp(0.0, 1.0)
            one_minus_s = _smoothstep(t)
            inv2 = torch.where(r > 0, (a / r.clamp_min(1.0)) ** 2, torch.zeros_like(r))
            k = torch.stack([one_minus_s * inv2 ** (j + 1) for j in range(self.N_TERMS)])
            self._kernels[key] = torch.fft.rfft(k.float().to(dev), dim=-1)
        return self._kernels[key]

    def _far_field(self, st: dict[str, Any], a_s: torch.Tensor) -> torch.Tensor:
        """Lorentzian tails beyond each sample's taper, (B, L) float32 (a_s: (B,) ladder levels)."""
        bsz, n_pts, dev = st["batch"], self.grid.n_points, st["q"].device
        e = self.margin
        n = _fft_size(2 * (n_pts + e) + 6)  # no wrap-around between any stick and grid point
        nt = self.N_TERMS
        sig = torch.zeros(bsz * nt * n, dtype=torch.float32, device=dev)
        if len(st["q"]):
            pos = st["q"] + e + 1  # +1: room for the f−1 weight
            f = torch.floor(pos)
            w = (pos - f).float()
            f = f.long()
            # Cubic Lagrange weights on f−1..f+2: the transpose of interpolating the kernel at the
            # stick's fractional position (linear splitting would leave errors ~1e-4).
            wts = (-w * (w - 1) * (w - 2) / 6, (w + 1) * (w - 1) * (w - 2) / 2,
                   -(w + 1) * w * (w - 2) / 2, (w + 1) * w * (w - 1) / 6)
            r2 = (st["fwhm"] / (2.0 * a_s[st["b"]].float())) ** 2  # u = r²·(a/x)²
            c1 = st["height"] * st["eta"] * r2
            base = st["b"] * nt * n + f
            for k in range(nt):
                c = c1 * (-r2) ** k
                for m, wm in enumerate(wts):
                    sig.index_add_(0, base + (k * n + m - 1), c * wm)
        spec = torch.fft.rfft(sig.view(bsz, nt, n), dim=-1)
        levels = torch.unique(a_s).tolist()
        kern = torch.stack([self._kernel_spectrum(a, n, dev) for a in levels])
        which = torch.searchsorted(torch.as_tensor(levels, device=dev), a_s)
        y = torch.fft.irfft((spec * kern[which]).sum(1), n=n, dim=-1)
        return y[:, e + 1:e + 1 + n_pts]

    # ------------------------------------------------------------------ public
    def render(self, two_theta: torch.Tensor, intensity: torch.Tensor, mask: torch.Tensor | None = None,
               augment: bool = False, seeds: torch.Tensor | None = None,
               generator: torch.Generator | None = None, wavelength: float | None = None,
               method: str | None = None) -> torch.Tensor:
        """Render a batch of stick patterns.

        Args:
            two_theta: (B, P) peak positions [deg] at ``wavelength``.
            intensity: (B, P) integrated intensities (any scale; each sample is rescaled).
            mask: (B, P) bool, True for real peaks (None: all real).
            augment: draw instrument/sample/background/noise per sample (train); else nominal.
            seeds: (B,) int64 per-sample seeds (``datasets.rendering.instrument.sample_seeds``);
                the pattern of a sample depends only on its seed. Drawn from ``generator`` when None.
            generator: torch.Generator used only when ``augment`` and ``seeds`` is None.
            wavelength: wavelength [Å] of ``two_theta`` (None: the grid's).
            method: override the renderer's ``"fast"``/``"dense"``.

        Returns:
            (B, 1, L) float32 on the input's device, each pattern scaled to max 1 (all zeros
            for a sample without peaks on the grid and no augmentation).
        """
        if two_theta.dim() != 2 or intensity.shape != two_theta.shape or \
                (mask is not None and mask.shape != two_theta.shape):
            raise fail(DataError, "PeakRenderer.render", f"two_theta {tuple(two_theta.shape)}, intensity "
                       f"{tuple(intensity.shape)} and mask must all be (B, P)", "pad with pad_peaks")
        dev = two_theta.device
        if two_theta.shape[1] == 0:  # no peaks at all: one masked dummy keeps reductions defined
            two_theta = torch.zeros(two_theta.shape[0], 1, device=dev)
            intensity, mask = torch.zeros_like(two_theta), torch.zeros_like(two_theta, dtype=torch.bool)
        if augment and seeds is None:
            seeds = torch.randint(-(2 ** 62), 2 ** 62, (two_theta.shape[0],), generator=generator)
        if seeds is not None:
            seeds = seeds.to(dev, torch.int64)
        st = self.sticks(two_theta, intensity, mask, augment, seeds, wavelength)
        y = (self._sum_dense if (method or self.method) == "dense" else self._sum_fast)(st)
        y = y / y.amax(dim=1, keepdim=True).clamp_min(1e-30)
        if augment:
            tt = torch.as_tensor(self.grid.two_theta(), device=dev)
            y = y + background(self.cfg, seeds, st["params"], tt, self.grid.wavelength)
            y = add_noise(y, seeds, st["params"])
            y = y / y.amax(dim=1, keepdim=True).clamp_min(1e-30)
        return y.clamp_min(0.0).unsqueeze(1).float()
