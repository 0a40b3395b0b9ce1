"""Peak physics of a kinematic powder pattern, apart from the renderer's numerics.

Positions (Bragg's law on the reciprocal metric), integrated intensities (atomic form factors,
structure factors, Lorentz–polarisation) and peak widths (Caglioti, Scherrer, Stokes–Wilson,
Thompson–Cox–Hastings). Used by the simulator (sticks of a new structure), by lattice
augmentation (sticks of a strained cell at training time) and by the renderer (widths, shapes).

References: International Tables for Crystallography Vol. C (2004), §6.2 (Lorentz–polarisation
of an unpolarised beam without monochromator, (1 + cos² 2θ) / (sin² θ cos θ)); B. D. Cullity,
*Elements of X-ray Diffraction*, ch. 4 (structure factor F(hkl) = Σ_j f_j exp(2πi h·x_j)).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from utils.lattice import (  # noqa: F401  (re-exported: the simulator's callers use them here)
    bragg_sin_theta,
    cell_matrix,
    inv_d2,
    lattice_matrix,
    reciprocal_metric,
    two_theta_deg,
    valid_cell,
)

# f(s) = Z − 41.78214 · s² · Σ_k a_k exp(−b_k s²), s = sin θ / λ [Å⁻¹]: the four-Gaussian
# fit of the atomic scattering factors tabulated with pymatgen (``atomic_scattering_params.json``,
# S. P. Ong et al., Comput. Mater. Sci. 68, 314 (2013)); 41.78214 = 8π² a₀ in Å (Mott–Bethe).
MOTT_BETHE = 41.78214
N_FF_TERMS = 4
MAX_Z = 118


def lorentz_polarisation(sin_theta: np.ndarray) -> np.ndarray:
    """(1 + cos² 2θ) / (sin² θ cos θ): unpolarised beam, no monochromator, Bragg–Brentano."""
    s = np.clip(sin_theta, 1e-12, 1.0 - 1e-12)
    cos2t = 1.0 - 2.0 * s * s
    return (1.0 + cos2t * cos2t) / (s * s * np.sqrt(1.0 - s * s))


def form_factors(z: np.ndarray, coeffs: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """Atomic scattering factors f_e(s) (F, E) of elements ``z`` (E,) at s² (F,) [Å⁻²].

    Args:
        z: (E,) atomic numbers.
        coeffs: (E, N_FF_TERMS, 2) pairs (a_k, b_k) of each element.
        s2: (F,) (sin θ / λ)² = 1 / (4 d²).
    """
    z = np.asarray(z, np.float64)
    a, b = coeffs[..., 0], coeffs[..., 1]  # (E, K)
    expo = np.exp(-b[None, :, :] * s2[:, None, None])  # (F, E, K)
    return z[None, :] - MOTT_BETHE * s2[:, None] * np.einsum("fek,ek->fe", expo, a)


def family_intensities(sf: np.ndarray, mult: np.ndarray, z: np.ndarray, coeffs: np.ndarray,
                       inv_d2_: np.ndarray, wavelength: float) -> tuple[np.ndarray, np.ndarray]:
    """2θ [deg] and integrated intensities of reflection families in one cell.

    Args:
        sf: (F, E, 2) per family and element, Re/Im of S_e(h) = Σ_{j∈e} occ_j exp(2πi h·x_j)
            for the family's representative h (symmetry-equivalent h have equal |F|²).
        mult: (F,) multiplicities (number of h in the family, Friedel mates included).
        z, coeffs: elements (E,) and their form-factor coefficients (E, K, 2).
        inv_d2_: (F,) 1/d² in this cell.
        wavelength: Å.

    Returns:
        (two_theta (F,), intensity (F,)): families beyond the limiting sphere get intensity 0.
    """
    sin_t = bragg_sin_theta(inv_d2_, wavelength)
    inside = sin_t < 1.0
    f = form_factors(z, coeffs, 0.25 * inv_d2_)  # (F, E)
    re = np.einsum("fe,fe->f", f, sf[..., 0])
    im = np.einsum("fe,fe->f", f, sf[..., 1])
    inten = np.where(inside, mult * (re * re + im * im) * lorentz_polarisation(sin_t), 0.0)
    return two_theta_deg(sin_t), inten


# ---------------------------------------------------------------------- peak widths and shapes
_LN2 = math.log(2.0)
_G_AREA = math.sqrt(math.pi / (4.0 * _LN2))  # area of a height-1 Gaussian of unit FWHM
_TCH = (2.69269, 2.42843, 4.47163, 0.07842)


def caglioti_fwhm(tan_theta: torch.Tensor, u: torch.Tensor, v: torch.Tensor, w: torch.Tensor
                  ) -> torch.Tensor:
    """Gaussian instrumental FWHM [deg] = √(U tan²θ + V tanθ + W) (Caglioti et al. 1958).

    V is limited to −1.8 √(UW) so that FWHM² stays positive at every angle, as fitted instruments
    do; the result is at least 0.02°.
    """
    v = torch.maximum(v, -1.8 * torch.sqrt(u * w))
    return torch.sqrt((u * tan_theta ** 2 + v * tan_theta + w).clamp_min(0.02 ** 2))


def lorentzian_fwhm(tan_theta: torch.Tensor, cos_theta: torch.Tensor, size_ang: torch.Tensor,
                    strain: torch.Tensor, wavelength: float, scherrer_k: float) -> torch.Tensor:
    """Sample broadening [deg]: Scherrer K λ / (L cos θ) plus Stokes–Wilson strain 4 ε tan θ."""
    return torch.rad2deg(scherrer_k * wavelength / size_ang / cos_theta + 4.0 * strain * tan_theta)


def tch(hg: torch.Tensor, hl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Thompson–Cox–Hastings total FWHM and Lorentzian fraction η from Gaussian/Lorentzian FWHMs."""
    h5 = (hg ** 5 + _TCH[0] * hg ** 4 * hl + _TCH[1] * hg ** 3 * hl ** 2 + _TCH[2] * hg ** 2 * hl ** 3
          + _TCH[3] * hg * hl ** 4 + hl ** 5)
    h = h5.clamp_min(1e-30) ** 0.2
    r = hl / h
    return h, (1.36603 * r - 0.47719 * r ** 2 + 0.11116 * r ** 3).clamp(0.0, 1.0)


def pseudo_voigt(x: torch.Tensor, fwhm: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """Height-1 pseudo-Voigt η·L + (1 − η)·G at offsets ``x`` (same units as ``fwhm``)."""
    z = x * x * (4.0 / (fwhm * fwhm))
    g = torch.exp(-_LN2 * z)
    return g + eta * (1.0 / (1.0 + z) - g)


def pv_area(fwhm: torch.Tensor, eta: torch.Tensor) -> torch.Tensor:
    """Area of the height-1 pseudo-Voigt: FWHM·(η π/2 + (1 − η)·√(π / 4 ln 2))."""
    return fwhm * (eta * (math.pi / 2.0) + (1.0 - eta) * _G_AREA)
