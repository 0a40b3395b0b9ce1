"""Kinematic powder-diffraction peak lists from crystal structures (pymatgen's XRDCalculator).

One function, used by the simulator and the raw (CIF) reader, so both produce identical sticks.
"""

from __future__ import annotations

import warnings

import numpy as np


def structure_peaks(structure, wavelength: float = 1.5406, two_theta_range=(5.0, 90.0),
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Peak positions and intensities of a pymatgen ``Structure``.

    Args:
        structure: ``pymatgen.core.Structure``.
        wavelength: X-ray wavelength in Å (default Cu Kα1).
        two_theta_range: (min, max) 2θ in degrees.

    Returns:
        (two_theta (n,) float32 in degrees, intensity (n,) float32 scaled to max 100). Peaks with
        the same 2θ (multiplicity) are already merged by pymatgen; Lorentz-polarisation and
        Debye–Waller-free atomic scattering factors are pymatgen's.
    """
    from pymatgen.analysis.diffraction.xrd import XRDCalculator  # heavy import, lazily

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pattern = XRDCalculator(wavelength=float(wavelength)).get_pattern(
            structure, scaled=True, two_theta_range=tuple(two_theta_range))
    tt = np.asarray(pattern.x, dtype=np.float32)
    inten = np.asarray(pattern.y, dtype=np.float32)
    keep = inten > 1e-3  # drop numerically-zero reflections (systematic absences rounding)
    return tt[keep], inten[keep]
