"""A measured pattern on the model's grid: resampled by d-spacing, with what is missing said.

The model's :class:`~utils.grid.GridSpec` is a 2θ grid at one wavelength, i.e. a fixed range of
d-spacings (d = λ / 2 sin θ). A pattern at any wavelength is mapped through d onto it
(:func:`utils.xy_files.interpolate_to_grid`); the part of the grid's d-range that the scan does not
reach is set to 0 and named in a warning (low-angle side: large d; high-angle side: small d).
"""

from __future__ import annotations

import math

import numpy as np
from loguru import logger

from utils.grid import GridSpec
from utils.pattern_io.base import MeasuredPattern
from utils.xy_files import interpolate_to_grid


def d_of(two_theta: float, wavelength: float) -> float:
    """d-spacing [Å] of the angle 2θ [deg]."""
    return wavelength / (2 * math.sin(math.radians(two_theta) / 2))


def missing_d(pattern: MeasuredPattern, grid: GridSpec, tolerance: float = 0.005) -> list[str]:
    """The parts of the grid's d-range that ``pattern`` does not cover, as phrases (empty: all)."""
    lam = pattern.wavelength.ka1
    g_hi = d_of(grid.two_theta_min, grid.wavelength)
    g_lo = d_of(grid.two_theta_max - grid.step, grid.wavelength)
    f_lo, f_hi = pattern.d_range()
    out = []
    if f_hi < g_hi * (1 - tolerance):
        tt = 2 * math.degrees(math.asin(min(1.0, grid.wavelength / (2 * f_hi))))
        out.append(f"d > {f_hi:.3f} Å (the model's 2θ < {tt:.2f}° at {grid.wavelength:g} Å; the scan "
                   f"starts at {pattern.two_theta[0]:.2f}° at {lam:g} Å)")
    if f_lo > g_lo * (1 + tolerance):
        tt = 2 * math.degrees(math.asin(min(1.0, grid.wavelength / (2 * f_lo))))
        reach = f" ({lam:g} Å cannot reach d = {g_lo:.3f} Å)" if lam > 2 * g_lo else ""
        out.append(f"d < {f_lo:.3f} Å (the model's 2θ > {tt:.2f}° at {grid.wavelength:g} Å; the scan "
                   f"ends at {pattern.two_theta[-1]:.2f}° at {lam:g} Å){reach}")
    return out


def pattern_to_grid(pattern: MeasuredPattern, grid: GridSpec) -> tuple[np.ndarray, float]:
    """``(x (L,) float32 max 1, coverage)``: the pattern resampled by d-spacing onto ``grid``.

    A warning names the missing part of the model's d-range (the model sees 0 there).

    Raises:
        DataError: the pattern has no intensity on the grid.
    """
    x, coverage = interpolate_to_grid(pattern.two_theta, pattern.intensity, grid, pattern.wavelength.ka1,
                                      source=pattern.path)
    missing = missing_d(pattern, grid)
    if missing:
        logger.warning(f"{pattern.path}: predicted with part of the model's d-range "
                       f"{d_of(grid.two_theta_max - grid.step, grid.wavelength):.3f}–"
                       f"{d_of(grid.two_theta_min, grid.wavelength):.3f} Å missing ({coverage:.0%} of the "
                       f"grid covered): {'; '.join(missing)}. The model sees 0 there: measure that range "
                       "for a reliable prediction")
    return x, coverage
