"""Render settings and the random train-time augmentations of a laboratory powder pattern.

The renderer (``datasets.rendering.renderer``) turns sticks (2θ, integrated intensity) into a pattern on the
grid. This module says *which* instrument and sample it imitates: every physical setting of
:class:`RenderConfig` is a triple ``(nominal, low, high)``. Evaluation renders with the nominal
values (no noise, no background, no shift); training draws each value per sample in
``[low, high]``, as SimXRD-4M does with its simulation conditions (B. Cao et al., "SimXRD-4M: big
simulated X-ray diffraction data and crystal symmetry classification benchmark", ICLR 2025: grain
size, preferred orientation, thermal vibration, background and noise sampled per pattern).

Randomness is counter based: every random number is a pure function of
``(per-sample seed, stream, counter)`` (the splitmix64 finaliser of G. Steele, D. Lea, C. Flood,
"Fast splittable pseudorandom number generators", OOPSLA 2014) computed with int64 tensor ops.
So a sample's pattern depends on its seed only, not on the batch it sits in, the DataLoader worker
or the device, and an interrupted run replays exactly the same patterns.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from utils.errors import ConfigError
from utils.lattice import KA2_OF_KA1  # noqa: F401  (re-exported: the Kα2 table lives with Bragg's law)

_M64 = 1 << 64


def _s64(x: int) -> int:
    return x - _M64 if x >= 1 << 63 else x


_GAMMA = _s64(0x9E3779B97F4A7C15)
_C1, _C2 = _s64(0xBF58476D1CE4E5B9), _s64(0x94D049BB133111EB)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """splitmix64 finaliser on int64 tensors (wrapping multiply; logical shifts via masks)."""
    z = (z ^ ((z >> 30) & ((1 << 34) - 1))) * _C1
    z = (z ^ ((z >> 27) & ((1 << 37) - 1))) * _C2
    return z ^ ((z >> 31) & ((1 << 33) - 1))


def sample_seeds(seed: int, epoch: int, idx: torch.Tensor | Any) -> torch.Tensor:
    """Per-sample seeds (B,) int64 from (run seed, epoch, dataset index), all hashed together."""
    idx = torch.as_tensor(idx, dtype=torch.int64)
    base = _mix(torch.tensor(int(seed) % (1 << 63), dtype=torch.int64))
    base = _mix(base + torch.tensor(int(epoch) % (1 << 63), dtype=torch.int64) * _GAMMA)  # wraps
    return _mix(_mix(base + idx * _GAMMA))


def hash_uniform(seeds: torch.Tensor, stream: int, n: int, pair: bool = False) -> torch.Tensor:
    """Uniform numbers in (0, 1) that depend only on (seed, stream, counter).

    Args:
        seeds: (B,) int64 per-sample seeds.
        stream: small integer naming what the numbers are for (keeps streams independent).
        n: numbers per sample.
        pair: also return a second, independent set from the same hashes (for Box–Muller).

    Returns:
        (B, n) float32, or a tuple of two when ``pair``.
    """
    key = _mix(seeds.to(torch.int64) + _s64(((stream + 1) * _C2) % _M64))
    z = _mix(key[:, None] + torch.arange(1, n + 1, device=seeds.device, dtype=torch.int64) * _GAMMA)
    u1 = (((z >> 40) & 0xFFFFFF).to(torch.float32) + 0.5) * 2.0 ** -24
    if not pair:
        return u1
    return u1, (((z >> 16) & 0xFFFFFF).to(torch.float32) + 0.5) * 2.0 ** -24


def hash_normal(seeds: torch.Tensor, stream: int, n: int) -> torch.Tensor:
    """(B, n) float32 standard normals (Box–Muller, both branches: one hash per two numbers)."""
    m = (n + 1) // 2
    u1, u2 = hash_uniform(seeds, stream, m, pair=True)
    r = torch.sqrt(-2.0 * torch.log(u1))
    ang = (2.0 * math.pi) * u2
    # Interleaved (cos, sin) so that number k never depends on n (padding-independent).
    return torch.stack([r * torch.cos(ang), r * torch.sin(ang)], dim=2).reshape(len(seeds), 2 * m)[:, :n]


@dataclass(frozen=True)
class RenderConfig:
    """Instrument and sample of the rendered patterns: ``(nominal, low, high)`` per setting.

    Peak shape: Thompson–Cox–Hastings pseudo-Voigt (P. Thompson, D. E. Cox, J. B. Hastings,
    J. Appl. Cryst. 20, 79 (1987)) combining a Gaussian instrumental width and a Lorentzian sample
    width, which makes the mixing η angle dependent as in real data.

    Attributes:
        caglioti_u, caglioti_v, caglioti_w: Gaussian instrumental FWHM² = U tan²θ + V tanθ + W
            [deg²] (G. Caglioti, A. Paoletti, F. P. Ricci, Nucl. Instrum. 3, 223 (1958)). Modern
            Bragg–Brentano instruments measure 0.03–0.08° FWHM on LaB6 (NIST SRM 660) at low angle
            (A. Le Bail, "Low FWHM and Rp" survey, cristal.org); benchtop units and wide slits
            0.1–0.15°. The nominal (0.004, −0.002, 0.003) gives 0.052° at 2θ = 30° and 0.064° at 80°.
        crystallite_nm: Scherrer crystallite size [nm], drawn log-uniformly; Lorentzian FWHM
            K λ / (L cos θ) (A. L. Patterson, Phys. Rev. 56, 978 (1939)). 30 nm gives 0.27° at 30°
            (nano-powders), 1000 nm is instrument limited.
        microstrain: apparent strain ε; Lorentzian FWHM 4 ε tan θ (Stokes–Wilson).
        scherrer_k: the Scherrer shape constant (0.9 for FWHM and roughly equiaxed crystallites).
            With the nominal values the total FWHM is ≈ 0.10° at 2θ = 30° and 0.15° at 80°, and
            augmentation spans ≈ 0.04–0.7°: laboratory powders span 0.05–0.3° at the strong peaks.
        ka2_ratio: Kα2/Kα1 intensity ratio (0.5 for an unmonochromated Cu tube, i.e. the
            2:1 statistical weights of the 2p3/2 and 2p1/2 levels).
        p_no_ka2: probability (train only) that a pattern has no Kα2, as with a Ge(111) Johansson
            Kα1 monochromator or patterns simulated by other programs.
        ka2_wavelength: Kα2 wavelength [Å]; None looks it up from the grid's Kα1 in
            ``KA2_OF_KA1`` (Cu: 1.54439 Å); a grid wavelength not in the table has no doublet.
        zero_shift_deg: goniometer zero error added to every 2θ [deg] (±0.1° per brief; a
            well-aligned instrument is within ±0.02°).
        displacement_mm: specimen displacement s [mm] (height error of the sample surface), which
            shifts peaks by Δ2θ = −2 s cos θ / R [rad] (Klug & Alexander, 1974): ±0.1 mm is a
            typical packing error.
        goniometer_radius_mm: R (200–300 mm on floor-standing instruments).
        jitter_sigma: σ of a log-normal factor on each peak's intensity, a proxy for preferred
            orientation / texture and imperfect powder averaging (which change relative
            intensities by tens of percent in practice).
        weak_peak_rel: peaks weaker than this fraction of the strongest are "weak".
        p_drop_weak: probability (train only) that each weak peak disappears.
        bg_constant: flat background (fluorescence, detector) relative to the strongest peak.
        bg_decay_amp, bg_decay_deg: low-angle rise (air scatter, beam spill-over) A·exp(−(2θ −
            2θ_min)/τ) relative to the strongest peak, τ in degrees.
        bg_poly: amplitude of a random cubic Chebyshev drift of the background.
        p_hump: probability (train only) of an amorphous hump (glass holder, amorphous phase).
        hump_amp, hump_d_ang, hump_sigma_deg: its height, centre as a d-spacing [Å] (≈ 4 Å, i.e.
            2θ ≈ 22° with Cu, for silica glass) and Gaussian σ in 2θ [deg].
        max_counts: counts at the strongest point; Poisson noise with variance equal to the counts
            (drawn log-uniformly; 0 = no noise). Routine lab scans reach 10³–10⁵ counts.
        gauss_sigma: extra Gaussian noise σ relative to the maximum (electronics, rounding).
        tail_factor: numerics of the fast renderer: exact profile evaluated within
            ``tail_factor`` × the sample's largest FWHM of each peak, Lorentzian tail beyond it by
            an FFT convolution (see ``datasets.rendering.renderer``).
        margin_deg: sticks up to this far outside the grid still contribute (their tails).
    """

    caglioti_u: tuple[float, float, float] = (0.004, 0.0, 0.02)
    caglioti_v: tuple[float, float, float] = (-0.002, -0.01, 0.0)
    caglioti_w: tuple[float, float, float] = (0.003, 0.001, 0.01)
    crystallite_nm: tuple[float, float, float] = (150.0, 30.0, 1000.0)
    microstrain: tuple[float, float, float] = (2e-4, 0.0, 1e-3)
    scherrer_k: float = 0.9
    ka2_ratio: tuple[float, float, float] = (0.5, 0.45, 0.55)
    p_no_ka2: float = 0.15
    ka2_wavelength: float | None = None
    zero_shift_deg: tuple[float, float, float] = (0.0, -0.1, 0.1)
    displacement_mm: tuple[float, float, float] = (0.0, -0.1, 0.1)
    goniometer_radius_mm: float = 240.0
    jitter_sigma: tuple[float, float, float] = (0.0, 0.0, 0.3)
    weak_peak_rel: float = 0.01
    p_drop_weak: float = 0.3
    bg_constant: tuple[float, float, float] = (0.0, 0.0, 0.08)
    bg_decay_amp: tuple[float, float, float] = (0.0, 0.0, 0.3)
    bg_decay_deg: tuple[float, float, float] = (8.0, 3.0, 20.0)
    bg_poly: tuple[float, float, float] = (0.0, 0.0, 0.03)
    p_hump: float = 0.3
    hump_amp: tuple[float, float, float] = (0.0, 0.02, 0.15)
    hump_d_ang: tuple[float, float, float] = (4.0, 3.2, 4.8)
    hump_sigma_deg: tuple[float, float, float] = (4.0, 2.5, 6.0)
    max_counts: tuple[float, float, float] = (0.0, 500.0, 1e5)
    gauss_sigma: tuple[float, float, float] = (0.0, 0.0, 0.003)
    tail_factor: float = 2.0
    margin_deg: float = 2.0

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, list):  # from JSON/YAML
                object.__setattr__(self, f.name, tuple(float(x) for x in v))
        self.validate()

    def validate(self) -> RenderConfig:
        """Raise ConfigError on inconsistent settings (low > high, probabilities outside [0, 1])."""
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, tuple):
                if len(v) != 3 or not all(math.isfinite(x) for x in v) or v[1] > v[2]:
                    raise ConfigError(f"RenderConfig.{f.name}={v}: expected finite (nominal, low, high) "
                                      "with low <= high. Fix: correct the render settings")
        for name in ("p_no_ka2", "p_drop_weak", "p_hump"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"RenderConfig.{name}={getattr(self, name)} is not a probability. "
                                  "Fix: use a value in [0, 1]")
        positive = ("crystallite_nm", "bg_decay_deg", "hump_d_ang", "hump_sigma_deg")
        if any(min(getattr(self, n)[:3]) <= 0 for n in positive) or self.tail_factor < 2.0 \
                or self.goniometer_radius_mm <= 0 or self.margin_deg < 0:
            raise ConfigError(f"RenderConfig: {positive}, goniometer_radius_mm must be > 0, "
                              "tail_factor >= 2 and margin_deg >= 0. Fix: correct the render settings")
        return self

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> RenderConfig:
        d = dict(d or {})
        unknown = set(d) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError(f"RenderConfig: unknown settings {sorted(unknown)}. Fix: use only "
                              f"{[f.name for f in fields(cls)]}")
        return cls(**d)


# Stream ids: one per random quantity, never reused.
_LOG_UNIFORM = {"crystallite_nm", "max_counts"}
_SCALARS = ("caglioti_u", "caglioti_v", "caglioti_w", "crystallite_nm", "microstrain", "ka2_ratio",
            "zero_shift_deg", "displacement_mm", "jitter_sigma", "bg_constant", "bg_decay_amp",
            "bg_decay_deg", "bg_poly", "hump_amp", "hump_d_ang", "hump_sigma_deg", "max_counts",
            "gauss_sigma")
STREAM_PARAMS, STREAM_JITTER, STREAM_DROP, STREAM_CHEB, STREAM_NOISE = 0, 1, 2, 3, 4


def draw_params(cfg: RenderConfig, seeds: torch.Tensor | None, batch: int,
                device: torch.device | str) -> dict[str, torch.Tensor]:
    """Per-sample settings: nominal values (``seeds`` None) or drawn from the ranges.

    Returns:
        dict of (B,) float64 tensors named like the config fields, plus ``has_ka2`` and
        ``has_hump`` (0/1).
    """
    out: dict[str, torch.Tensor] = {}
    if seeds is None:
        for name in _SCALARS:
            out[name] = torch.full((batch,), float(getattr(cfg, name)[0]), dtype=torch.float64,
                                   device=device)
        out["has_ka2"] = torch.ones(batch, dtype=torch.float64, device=device)
        out["has_hump"] = (out["hump_amp"] > 0).double()
        return out
    u = hash_uniform(seeds, STREAM_PARAMS, len(_SCALARS) + 2).double()
    for k, name in enumerate(_SCALARS):
        _, lo, hi = getattr(cfg, name)
        if name in _LOG_UNIFORM and lo > 0:
            out[name] = torch.exp(math.log(lo) + u[:, k] * (math.log(hi) - math.log(lo)))
        else:
            out[name] = lo + u[:, k] * (hi - lo)
    out["has_ka2"] = (u[:, -2] >= cfg.p_no_ka2).double()
    out["has_hump"] = (u[:, -1] < cfg.p_hump).double()
    return out


def peak_factors(cfg: RenderConfig, seeds: torch.Tensor, rel: torch.Tensor,
                 params: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Texture jitter and weak-peak dropout for the sticks of each sample.

    Args:
        rel: (B, P) intensities relative to each sample's strongest stick.

    Returns:
        (factor (B, P) float64 log-normal multipliers, keep (B, P) bool).
    """
    n = rel.shape[1]
    z = hash_normal(seeds, STREAM_JITTER, n).double()
    factor = torch.exp(params["jitter_sigma"][:, None] * z)
    drop = (hash_uniform(seeds, STREAM_DROP, n) < cfg.p_drop_weak) & (rel < cfg.weak_peak_rel)
    return factor, ~drop


def background(cfg: RenderConfig, seeds: torch.Tensor, params: dict[str, torch.Tensor],
               tt: torch.Tensor, wavelength: float) -> torch.Tensor:
    """Smooth random background (B, L) relative to a strongest-peak height of 1.

    Args:
        tt: (L,) float64 grid 2θ in degrees (on the renderer's device).
        wavelength: grid wavelength [Å] (places the amorphous hump at its d-spacing).
    """
    # float32 is plenty for a smooth background and twice as fast as float64 on CPU.
    p = {k: v[:, None].float() for k, v in params.items()}
    tt = tt.float()
    t = tt[None, :] - tt[0]
    x = t * (2.0 / max(float(tt[-1] - tt[0]), 1e-9)) - 1.0  # [-1, 1] for Chebyshev
    c = (2.0 * hash_uniform(seeds, STREAM_CHEB, 3) - 1.0) * p["bg_poly"]
    bg = p["bg_constant"] + c[:, :1] * x + c[:, 1:2] * (2 * x * x - 1) + c[:, 2:3] * (4 * x ** 3 - 3 * x)
    bg = bg + p["bg_decay_amp"] * torch.exp(-t / p["bg_decay_deg"])
    s = torch.clamp(wavelength / (2.0 * p["hump_d_ang"]), max=1.0)
    centre = 2.0 * torch.rad2deg(torch.asin(s)) - tt[0]
    bg = bg + p["has_hump"] * p["hump_amp"] * torch.exp(-0.5 * ((t - centre) / p["hump_sigma_deg"]) ** 2)
    # The cubic drift may dip below zero where no other term lifts it: measured counts never do.
    return bg.clamp_min(0.0)


def add_noise(y: torch.Tensor, seeds: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
    """Counting noise (Gaussian approximation of Poisson at ``max_counts``) plus Gaussian noise.

    Args:
        y: (B, L) float32 pattern whose strongest point is ≈ 1 (peaks plus background).

    Returns:
        (B, L) float32, non-negative.
    """
    n = params["max_counts"].float()[:, None]
    g = params["gauss_sigma"].float()[:, None]
    # Var = y / N (counts N·y, Poisson variance N·y, rescaled) + g²; N = 0 means no counting noise.
    var = torch.where(n > 0, y.clamp_min(0.0) / n.clamp_min(1e-12), torch.zeros_like(y)) + g * g
    z = hash_normal(seeds, STREAM_NOISE, y.shape[1]).to(y.device)
    return (y + torch.sqrt(var) * z).clamp_min(0.0)
