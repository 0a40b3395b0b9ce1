"""Lattice geometry shared by the simulator (``datasets/``) and indexing (``indexing/``).

Direct and reciprocal metric of a cell (a, b, c [Å], α, β, γ [deg]), 1/d² of Miller indices, and
Bragg's law λ = 2 d sin θ. numpy only. Q = 1/d² = hᵀ G* h (G* = G⁻¹) is linear in the six
reciprocal-metric parameters (A, B, C, D, E, F) = (a*², b*², c*², 2a*b* cos γ*, 2a*c* cos β*,
2b*c* cos α*), which is what makes indexing a linear problem once hkl are assigned
(docs/methods/indexing.md).
"""

from __future__ import annotations

import math

import numpy as np


def cell_matrix(cell: np.ndarray) -> np.ndarray:
    """Direct metric tensor G (…, 3, 3) of cells (…, 6) = (a, b, c [Å], α, β, γ [deg])."""
    cell = np.asarray(cell, np.float64)
    a, b, c = cell[..., 0], cell[..., 1], cell[..., 2]
    ca, cb, cg = (np.cos(np.radians(cell[..., k])) for k in (3, 4, 5))
    g = np.empty(cell.shape[:-1] + (3, 3))
    g[..., 0, 0], g[..., 1, 1], g[..., 2, 2] = a * a, b * b, c * c
    g[..., 0, 1] = g[..., 1, 0] = a * b * cg
    g[..., 0, 2] = g[..., 2, 0] = a * c * cb
    g[..., 1, 2] = g[..., 2, 1] = b * c * ca
    return g


def lattice_matrix(cell: np.ndarray) -> np.ndarray:
    """Row vectors a, b, c (3, 3) [Å] of a cell (6,): a along x, b in the xy plane."""
    a, b, c, al, be, ga = (float(v) for v in cell)
    ca, cb, cg, sg = (math.cos(math.radians(al)), math.cos(math.radians(be)),
                      math.cos(math.radians(ga)), math.sin(math.radians(ga)))
    cy = (ca - cb * cg) / sg
    return np.array([[a, 0.0, 0.0], [b * cg, b * sg, 0.0],
                     [c * cb, c * cy, c * math.sqrt(max(1.0 - cb * cb - cy * cy, 0.0))]])


def reciprocal_metric(cell: np.ndarray) -> np.ndarray:
    """G* = G⁻¹ (…, 3, 3): 1/d² = hᵀ G* h for Miller indices h."""
    return np.linalg.inv(cell_matrix(cell))


def valid_cell(cell: np.ndarray) -> bool:
    """Whether (a, b, c, α, β, γ) describes a real cell (positive lengths, positive-definite G)."""
    cell = np.asarray(cell, np.float64)
    if cell.shape != (6,) or not np.all(np.isfinite(cell)) or np.any(cell[:3] <= 0):
        return False
    if np.any(cell[3:] <= 0) or np.any(cell[3:] >= 180):
        return False
    return bool(np.all(np.linalg.eigvalsh(cell_matrix(cell)) > 1e-9 * float(np.max(cell[:3])) ** 2))


def inv_d2(hkl: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """1/d² [Å⁻²] of reflections ``hkl`` (F, 3) in ``cell`` (6,): (F,) float64."""
    h = np.asarray(hkl, np.float64)
    return np.einsum("fi,ij,fj->f", h, reciprocal_metric(cell), h)


def bragg_sin_theta(inv_d2_: np.ndarray, wavelength: float) -> np.ndarray:
    """sin θ = λ / (2 d) (may exceed 1: beyond the limiting sphere)."""
    return 0.5 * float(wavelength) * np.sqrt(np.maximum(inv_d2_, 0.0))


def two_theta_deg(sin_theta: np.ndarray) -> np.ndarray:
    """2θ [deg] of sin θ ≤ 1."""
    return np.degrees(2.0 * np.arcsin(np.clip(sin_theta, 0.0, 1.0)))


# Kα1 → Kα2 wavelengths [Å] of lab anodes (G. Hölzer et al., Phys. Rev. A 56, 4554 (1997); Cu Kα2
# as in most Rietveld programs): Cu, Mo, Co, Fe, Cr, Ag. Used by the renderer (the doublet it draws)
# and the peak picker (the doublet it fits). A wavelength that matches none (synchrotron) has no Kα2.
KA2_OF_KA1 = {1.5406: 1.54439, 0.7093: 0.71359, 1.78897: 1.79285, 1.93604: 1.93998, 2.2897: 2.29361,
              0.55941: 0.5638}


def ka2_wavelength_of(wavelength: float, tol: float = 2e-3) -> float | None:
    """The Kα2 wavelength of a lab anode's Kα1 [Å], matched within ``tol`` (1.5406 and 1.540598
    both mean Cu); None for a wavelength of no known anode."""
    k = min(KA2_OF_KA1, key=lambda w: abs(w - wavelength))
    return KA2_OF_KA1[k] if abs(k - wavelength) < tol else None


def two_theta_to_q(two_theta_deg: np.ndarray, wavelength: float) -> np.ndarray:
    """Q = 1/d² [Å⁻²] of positions 2θ [deg] by Bragg's law: Q = (2 sin θ / λ)²."""
    s = np.sin(np.radians(np.asarray(two_theta_deg, np.float64)) / 2.0)
    return (2.0 * s / float(wavelength)) ** 2


def q_to_two_theta(q: np.ndarray, wavelength: float) -> np.ndarray:
    """2θ [deg] of Q = 1/d² [Å⁻²] (NaN beyond the limiting sphere, λ √Q / 2 > 1)."""
    s = 0.5 * float(wavelength) * np.sqrt(np.maximum(np.asarray(q, np.float64), 0.0))
    with np.errstate(invalid="ignore"):
        return np.where(s <= 1.0, np.degrees(2.0 * np.arcsin(np.minimum(s, 1.0))), np.nan)


def dq_d2theta(two_theta_deg: np.ndarray, wavelength: float) -> np.ndarray:
    """dQ/d(2θ) [Å⁻² per degree]: (4/λ²) sin θ cos θ · π/180 (Q's uncertainty from 2θ's)."""
    th = np.radians(np.asarray(two_theta_deg, np.float64)) / 2.0
    return 4.0 / float(wavelength) ** 2 * np.sin(th) * np.cos(th) * (math.pi / 180.0)


def metric_params(gstar: np.ndarray) -> np.ndarray:
    """(…, 6) parameters (A, B, C, D, E, F) of reciprocal metrics G* (…, 3, 3)."""
    g = np.asarray(gstar, np.float64)
    return np.stack([g[..., 0, 0], g[..., 1, 1], g[..., 2, 2], 2 * g[..., 0, 1], 2 * g[..., 0, 2],
                     2 * g[..., 1, 2]], axis=-1)


def metric_from_params(p: np.ndarray) -> np.ndarray:
    """Inverse of :func:`metric_params`: G* (…, 3, 3) from (…, 6)."""
    p = np.asarray(p, np.float64)
    g = np.empty(p.shape[:-1] + (3, 3))
    g[..., 0, 0], g[..., 1, 1], g[..., 2, 2] = p[..., 0], p[..., 1], p[..., 2]
    g[..., 0, 1] = g[..., 1, 0] = p[..., 3] / 2
    g[..., 0, 2] = g[..., 2, 0] = p[..., 4] / 2
    g[..., 1, 2] = g[..., 2, 1] = p[..., 5] / 2
    return g


def hkl_terms(hkl: np.ndarray) -> np.ndarray:
    """(…, 6) design rows (h², k², l², hk, hl, kl): Q = hkl_terms(h) @ metric_params(G*)."""
    h = np.asarray(hkl, np.float64)
    x, y, z = h[..., 0], h[..., 1], h[..., 2]
    return np.stack([x * x, y * y, z * z, x * y, x * z, y * z], axis=-1)


def cell_of_metric(gstar: np.ndarray) -> np.ndarray:
    """(a, b, c, α, β, γ) of a reciprocal metric G* (3, 3) (inverts :func:`reciprocal_metric`)."""
    g = np.linalg.inv(np.asarray(gstar, np.float64))
    a, b, c = np.sqrt(np.diag(g))
    al = math.degrees(math.acos(np.clip(g[1, 2] / (b * c), -1, 1)))
    be = math.degrees(math.acos(np.clip(g[0, 2] / (a * c), -1, 1)))
    ga = math.degrees(math.acos(np.clip(g[0, 1] / (a * b), -1, 1)))
    return np.array([a, b, c, al, be, ga])


def cell_volume(cell: np.ndarray) -> float:
    """Volume [Å³] of a cell (6,)."""
    return float(math.sqrt(max(np.linalg.det(cell_matrix(cell)), 0.0)))


def hkl_box(hmax: int, kmax: int, lmax: int) -> np.ndarray:
    """All (h, k, l) with |h| ≤ hmax … except 0 0 0, half of them (Friedel mates removed): (M, 3)."""
    h, k, l = np.meshgrid(np.arange(-hmax, hmax + 1), np.arange(-kmax, kmax + 1),
                          np.arange(-lmax, lmax + 1), indexing="ij")
    hkl = np.stack([h.ravel(), k.ravel(), l.ravel()], axis=1)
    first = np.where(hkl[:, 0] != 0, hkl[:, 0], np.where(hkl[:, 1] != 0, hkl[:, 1], hkl[:, 2]))
    return hkl[first > 0]
