"""Exact lattice augmentation: the pattern of the same crystal in a randomly strained cell.

A simulated structure is fractional coordinates in a cell. Any other cell of the same crystal
system with the same coordinates is a valid crystal of the same space group, and its kinematic
pattern follows exactly from the stored reflection families (``datasets.synthesis.reflections``):
new d-spacings → new 2θ, new Lorentz–polarisation, new form factors at the new sin θ / λ.

Free parameters per crystal system (conventional cell; trigonal groups in hexagonal axes, as the
simulator stores them): cubic a; tetragonal, trigonal, hexagonal a, c; orthorhombic a, b, c;
monoclinic a, b, c and the one angle ≠ 90° (β for the standard b-unique setting); triclinic all
six. Lengths are scaled by exp(u), u ~ U(−ln(1+s), ln(1+s)) per free length (tied lengths share
one factor); free angles move by U(−δ, δ) degrees; a triclinic draw that is not a valid cell is
redrawn (the original cell is kept after a few failures).

Randomness: one ``numpy`` Generator per sample, seeded from the sample's 64-bit seed, so the
strained cell depends only on (run seed, epoch, sample), as every other augmentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from datasets.rendering.physics import bragg_sin_theta, family_intensities, inv_d2, valid_cell

# crystal systems 0..6 (utils.crystal order): lengths tied (groups of a, b, c) and free angles
_LENGTH_GROUPS = {0: ((0,), (1,), (2,)), 1: ((0,), (1,), (2,)), 2: ((0,), (1,), (2,)),
                  3: ((0, 1), (2,)), 4: ((0, 1), (2,)), 5: ((0, 1), (2,)), 6: ((0, 1, 2),)}


def free_angles(cell: np.ndarray, crystal_system: int) -> tuple[int, ...]:
    """Indices (3..5) of the angles that may change: all for triclinic, the non-90° one for
    monoclinic (β if the cell happens to have none), none otherwise."""
    if crystal_system == 0:
        return (3, 4, 5)
    if crystal_system == 1:
        off = [k for k in (3, 4, 5) if abs(float(cell[k]) - 90.0) > 1e-3]
        return (off[0],) if off else (4,)
    return ()


def strain_cell(cell: np.ndarray, crystal_system: int, rng: np.random.Generator, strain: float,
                angle_deg: float, tries: int = 8) -> np.ndarray:
    """A random cell of the same crystal system near ``cell`` (see the module docstring)."""
    cell = np.asarray(cell, np.float64)
    if strain <= 0 and angle_deg <= 0:
        return cell.copy()
    lim = math.log1p(max(strain, 0.0))
    for _ in range(tries):
        new = cell.copy()
        for grp in _LENGTH_GROUPS[int(crystal_system)]:
            new[list(grp)] *= math.exp(rng.uniform(-lim, lim)) if lim > 0 else 1.0
        for k in free_angles(cell, int(crystal_system)):
            new[k] += rng.uniform(-angle_deg, angle_deg) if angle_deg > 0 else 0.0
        if valid_cell(new):
            return new
    return cell.copy()


def family_sticks(hkl: np.ndarray, mult: np.ndarray, sf: np.ndarray, z: np.ndarray,
                  ff_coeffs: np.ndarray, cell: np.ndarray, wavelength: float,
                  two_theta_range: tuple[float, float] = (5.0, 90.0),
                  min_rel: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Sticks (2θ [deg], intensity scaled to max 100) of reflection families in ``cell``.

    Args:
        hkl: (F, 3) representatives; mult: (F,) multiplicities; sf: (F, E, 2) Re/Im of S_e.
        z: (E,) atomic numbers (0 = padding, ignored); ff_coeffs: (E, K, 2) their form factors.
        cell: (6,) a, b, c [Å], α, β, γ [deg].
        two_theta_range: keep sticks inside it (the scale's maximum is taken inside it too).
        min_rel: drop sticks weaker than this fraction of the strongest (as the stored tables).

    Returns:
        (2θ, intensity) float32, sorted by 2θ; one stick per family (coincident ones are not
        merged: a renderer sums them anyway).
    """
    q2 = inv_d2(hkl, cell)
    tt, inten = family_intensities(np.asarray(sf, np.float64), np.asarray(mult, np.float64),
                                   z, np.asarray(ff_coeffs, np.float64), q2, wavelength)
    keep = (tt >= two_theta_range[0]) & (tt <= two_theta_range[1]) & (inten > 0) \
        & (bragg_sin_theta(q2, wavelength) < 1.0)
    tt, inten = tt[keep], inten[keep]
    if len(inten):
        inten = inten * (100.0 / inten.max())
        if min_rel > 0:
            strong = inten >= 100.0 * min_rel
            tt, inten = tt[strong], inten[strong]
    order = np.argsort(tt, kind="stable")
    return tt[order].astype(np.float32), inten[order].astype(np.float32)


@dataclass(frozen=True)
class LatticeAugment:
    """Re-render samples that carry reflection families in randomly strained cells.

    Attributes:
        strain: maximal relative change of each free cell length (0.06: ±6 %).
        angle_deg: maximal change of each free cell angle [deg].
        two_theta_range: 2θ range [deg] of the data (at the data's wavelength).
        min_rel: drop sticks below this fraction of the strongest (the data's ``min_intensity``).
    """

    strain: float = 0.06
    angle_deg: float = 3.0
    two_theta_range: tuple[float, float] = (5.0, 90.0)
    min_rel: float = 0.005

    def sticks(self, item: dict, seed: int, wavelength: float) -> tuple[np.ndarray, np.ndarray]:
        """New (2θ, intensity) of one item with families (keys of ``PeakListDataset`` items)."""
        rng = np.random.default_rng(int(seed) & ((1 << 63) - 1))
        cell = strain_cell(item["cell"], int(item["y_cs"]), rng, self.strain, self.angle_deg)
        return family_sticks(item["hkl"], item["mult"], item["sf"], item["z"], item["ff"], cell,
                             wavelength, self.two_theta_range, self.min_rel)
